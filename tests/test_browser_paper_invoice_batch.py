"""In Chromium, in Chinese: finance opens the batch page from the invoice queue, uploads the
list of printed paper invoices, reads the preview, confirms and reads the result; then marks
them mailed from a GBK CSV with the carrier typed on the page."""
from __future__ import annotations

from app import models as m
from app.extensions import db
from tests.test_browser_smoke import log_in
from tests.test_paper_invoice_batch import make_invoice, xlsx

IS = m.InvoiceStatus


def test_finance_issues_then_mails_paper_invoices_from_uploaded_lists(page, world, tmp_path):
    first = make_invoice(world, "O2022000301")
    second = make_invoice(world, "O2022000302", unit="上海徐汇贸易")
    issue_list = tmp_path / "开票清单.xlsx"
    issue_list.write_bytes(xlsx([["订单", "发票号码"], ["O2022000301", "44006001"],
                                 ["O2022000302", "44006002"], ["O2099000001", "44006003"]]))

    log_in(page, "finance")
    page.goto("/finance/invoices/list/")
    page.click("#open-paper-invoice-batch")
    page.wait_for_selector("#paper-invoice-batch-page")
    assert "订单" in page.inner_text("#paper-invoice-batch-columns")
    page.check("#mode-issue")
    page.set_input_files("#invoice_list", str(issue_list))
    page.click("#preview-paper-invoice-batch")
    page.wait_for_selector("#paper-invoice-batch-preview")
    assert page.inner_text("#batch-counts") == "3 行中 2 行可执行"
    assert "没有该订单的开票申请" in page.inner_text("tr[data-row='4']")
    assert "上海徐汇贸易" in page.inner_text("tr[data-row='3']")
    db.session.expire_all()
    assert db.session.get(m.Invoice, first.id).status is IS.requested
    page.click("#confirm-paper-invoice-batch")
    page.wait_for_selector("#paper-invoice-batch-result")
    assert "已完成 2 条记录" in page.inner_text("#batch-done")
    assert "O2099000001" in page.inner_text("#batch-refused")
    db.session.expire_all()
    assert (db.session.get(m.Invoice, first.id).status,
            db.session.get(m.Invoice, first.id).number) == (IS.issued, "44006001")
    assert db.session.get(m.Invoice, second.id).number == "44006002"

    mail_list = tmp_path / "mailed.csv"
    mail_list.write_bytes("订单号,快递单号\r\nO2022000301,SF0000000001\r\n"
                          "O2022000302,SF0000000002\r\n".encode("gbk"))
    page.click("text=上传其他文件")
    page.wait_for_selector("#paper-invoice-batch-page")
    page.check("#mode-mail")
    page.fill("#carrier", "顺丰速运")
    page.set_input_files("#invoice_list", str(mail_list))
    page.click("#preview-paper-invoice-batch")
    page.wait_for_selector("#paper-invoice-batch-preview")
    assert page.inner_text("#batch-counts") == "2 行中 2 行可执行"
    assert "顺丰速运" in page.inner_text("tr[data-row='2']")
    page.click("#confirm-paper-invoice-batch")
    page.wait_for_selector("#paper-invoice-batch-result")
    assert "已完成 2 条记录" in page.inner_text("#batch-done")
    db.session.expire_all()
    mailed = db.session.get(m.Invoice, second.id)
    assert (mailed.status, mailed.carrier, mailed.tracking_no) == (
        IS.mailed, "顺丰速运", "SF0000000002")
    page.click("#back-to-invoices")
    page.wait_for_selector("#paper-invoice-batch")
    assert "SF0000000001" in page.content()
