"""Invoices and refunds that explain themselves (issue 12), through each role's HTTP path:
red-letter reversals shown as such (negative amount, the invoice they reverse) in the unit's
and finance's lists, show pages, export and PDF, without double-counting in reconciliation;
reason dialogs worded for their reader, an empty reason refused with a message; the unit
withdraws an invoice request finance has not issued; a batch refund refunds what it can and
names each refused person and order; every list and show header in Chinese."""
from __future__ import annotations

import io
import json
import os
import re
from datetime import date

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from app import models as m
from app import storage
from app.extensions import db
from app.scoping.actor import actor_for_user
from app.workflow import invoices, reconciliation
from tests import test_money
from tests.conftest import ROOT, UNIT_A, UNIT_B, text_of
from tests.test_invoices import (
    all_invoices,
    ask,
    audit,
    e_invoice,
    paper_invoice,
    pay_by_qr,
    pdf_text,
    special_buyer,
)
from tests.test_money import declare_transfer, order_persons, transfer

# Unit A paid by transfer for 王伟 and 李娜, then cancelled both (the money tests' fixture).
paid_and_cancelled = test_money.paid_and_cancelled
IS = m.InvoiceStatus
DATA = os.path.join(ROOT, "tests", "data")


def real_numbers() -> dict:
    with open(os.path.join(DATA, "invoices_numbers.json"), encoding="utf-8") as fh:
        return json.load(fh)


def row_of(html: str, number: str) -> str:
    """The text of the list row of the invoice numbered `number` (its first column)."""
    for row in re.findall(r"<tr data-pk=.*?</tr>", html, flags=re.S):
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip()
        if re.match(rf"(查看 )?{number} ", text):
            return text
    raise AssertionError(f"no row of {number}")


def dialogs(html: str) -> dict:
    """The reason dialogs a list hands to its action script: {action: {prompt, required}}."""
    found = re.search(r"new CiieActions\((.*?)\);", html)
    assert found, "the list has no action script"
    return json.loads(found.group(1))


def void(client, invoice_id: int, reason: str = "抬头需要更换"):
    return client.action("/unit/invoices", "request_void", [invoice_id], reason=reason)


def flashed(client, response) -> str:
    return text_of(client.get(response.headers["Location"]))


# ------------------------------------------------------------ red-letter reversals ---------

def test_e_invoice_numbers_have_the_shape_of_a_fully_digitalised_e_invoice(login, world):
    shape = re.compile(real_numbers()["full_digital_e_invoice"]["pattern"])
    for sample in real_numbers()["full_digital_e_invoice"]["samples"]:
        assert shape.fullmatch(sample), sample
    original = e_invoice(world, login)
    void(login(UNIT_A), original.id)
    for invoice in all_invoices():
        assert shape.fullmatch(invoice.number), invoice.number
        # 2022 (the business clock), issued in Shanghai.
        assert invoice.number.startswith("2231")


def test_a_reversal_shows_as_red_letter_with_the_negative_amount_and_the_reversed_number(
        login, world):
    original = e_invoice(world, login)
    client = login(UNIT_A)
    assert void(client, original.id).status_code == 302
    first, reversal = all_invoices()
    assert reversal.reversal_of_id == first.id
    # Money stays integer fen: the row keeps the printed amount, what it counts for is negative.
    assert (reversal.amount_fen, reversal.signed_amount_fen) == (20000, -20000)
    assert first.signed_amount_fen == 20000

    listing = client.get("/unit/invoices/list/").text
    row = row_of(listing, reversal.number)
    assert "红字发票" in row and "-¥200.00" in row and original.number in row
    assert "增值税普通发票" not in row
    kept = row_of(listing, original.number)
    assert "¥200.00" in kept and "-¥200.00" not in kept and "已作废" in kept
    show = text_of(client.get(f"/unit/invoices/show/{reversal.id}"))
    assert "红字发票" in show and "-¥200.00" in show
    assert f"被冲红发票号码 {original.number}" in show

    finance = login("finance")
    row = row_of(finance.get("/finance/invoices/list/").text, reversal.number)
    assert "红字发票" in row and "-¥200.00" in row and original.number in row
    show = text_of(finance.get(f"/finance/invoices/show/{reversal.id}"))
    assert "红字发票" in show and "-¥200.00" in show and original.number in show

    # Its PDF is the red-letter invoice: negative amount, the number it reverses.
    text = pdf_text(reversal.pdf_key)
    assert "红字电子发票" in text and "-¥200.00" in text and original.number in text
    assert "名称" in text and "姓名" not in text


def test_finance_exports_the_invoices_with_reversals_as_red_letter(login, world):
    original = e_invoice(world, login)
    void(login(UNIT_A), original.id)
    reversal = all_invoices()[1]
    finance = login("finance")
    response = finance.post("/finance/invoices/export")
    assert response.status_code == 302
    task = db.session.scalars(sa.select(m.BackgroundTask).order_by(
        m.BackgroundTask.id.desc())).first()
    db.session.refresh(task)
    assert task.status is m.TaskStatus.done, task.result
    with open(storage.path_of(task.file_key or task.result["file_key"]), "rb") as fh:
        sheet = load_workbook(io.BytesIO(fh.read())).active
    rows = list(sheet.iter_rows(values_only=True))
    header = rows[0]
    assert header[:6] == ("发票号码", "订单", "单位", "发票类型", "状态", "金额")
    assert header[-1] == "被冲红发票号码"
    by_number = {r[0]: r for r in rows[1:]}
    assert by_number[reversal.number][3:6] == ("红字发票", "已开具", "-¥200.00")
    assert by_number[reversal.number][-1] == original.number
    assert by_number[original.number][4:6] == ("已作废", "¥200.00")
    assert by_number[original.number][3] != "红字发票"
    # A unit has no export of invoices.
    assert login(UNIT_A).post("/finance/invoices/export").status_code == 403


def test_reconciliation_counts_an_invoice_and_its_reversal_once(login, world):
    original = e_invoice(world, login)
    void(login(UNIT_A), original.id)
    table = reconciliation.daily(date(2022, 9, 15), date(2022, 9, 15))
    # Issued once (the reversal is no second invoice), voided once: never +¥400 or ¥0 issued.
    assert table.total.invoices_issued == [1, 20000]
    assert table.total.invoices_voided == [1, 20000]
    assert table.total.net_fen == 20000


# ------------------------------------------------------------------- reason dialogs --------

def test_the_void_dialog_speaks_to_the_unit_and_an_empty_reason_is_refused(login, world):
    original = e_invoice(world, login)
    client = login(UNIT_A)
    listing = client.get("/unit/invoices/list/").text
    # The dialog's words, as the list hands them to its script.
    assert dialogs(listing) == {"request_void": {"prompt": "作废原因：为什么要作废这张发票？",
                                                 "required": "请填写作废原因。"}}
    for empty in ("", "   "):
        response = void(client, original.id, reason=empty)
        assert response.status_code == 302
        assert "请填写作废原因。" in flashed(client, response)
    assert [i.status for i in all_invoices()] == [IS.issued]
    assert void(client, original.id, reason="抬头需要更换").status_code == 302
    assert [i.status for i in all_invoices()] == [IS.voided, IS.issued]
    assert audit(original.id)[2][0] == "request_void"
    reason = db.session.scalar(sa.select(m.AuditEvent.reason).where(
        m.AuditEvent.record_type == "invoice", m.AuditEvent.record_id == original.id,
        m.AuditEvent.action == "request_void"))
    assert reason == "抬头需要更换"


def test_finance_reason_dialogs_are_worded_for_finance_and_refuse_an_empty_reason(
        login, world, paid_and_cancelled):
    order = pay_by_qr(world)
    assert ask(login(UNIT_A), order, **special_buyer(world)).status_code == 302
    [request] = all_invoices()
    finance = login("finance")
    listing = finance.get("/finance/invoices/list/").text
    assert dialogs(listing)["reject_invoices"] == {
        "prompt": "驳回原因（单位将看到）：", "required": "请填写驳回原因，单位将看到此原因。"}
    response = finance.action("/finance/invoices", "reject_invoices", [request.id], reason=" ")
    assert "请填写驳回原因，单位将看到此原因。" in flashed(finance, response)
    assert all_invoices()[0].status is IS.requested

    client = login(UNIT_A)
    client.post("/unit/refunds/request", data={
        "person": [str(world.person("王伟").id)], "route": "original"})
    refund = db.session.scalars(sa.select(m.Refund)).one()
    listing = finance.get("/finance/refunds/list/").text
    assert dialogs(listing)["reject_refunds"]["prompt"] == "退款驳回原因（单位将看到）："
    response = finance.action("/finance/refunds", "reject_refunds", [refund.id], reason="")
    assert "请填写退款驳回原因" in flashed(finance, response)
    db.session.expire_all()
    assert refund.status is m.RefundStatus.requested
    # The voucher dialog (finance reads it, the unit reads the reason) keeps its wording.
    transfers = finance.get("/finance/transfers/list/?_flt_0_status=confirmed").text
    assert dialogs(transfers)["reject_transfers"] == {"prompt": "原因（单位将看到）：",
                                                      "required": "请填写原因。"}


# ---------------------------------------------------------- withdrawing a request ----------

def test_the_unit_withdraws_a_paper_request_finance_has_not_issued_and_asks_again(
        login, world):
    order = pay_by_qr(world)
    client = login(UNIT_A)
    assert ask(client, order, **special_buyer(world, buyer_phone="021-5000000")).status_code \
        == 302
    [wrong] = all_invoices()
    assert wrong.status is IS.requested
    assert "撤回申请" in client.get("/unit/invoices/list/").text
    # Another unit cannot reach it, finance does not withdraw for the unit.
    assert login(UNIT_B).action("/unit/invoices", "withdraw_requests",
                                [wrong.id]).status_code == 404
    assert login("finance").action("/unit/invoices", "withdraw_requests",
                                   [wrong.id]).status_code == 403
    assert all_invoices()[0].status is IS.requested

    response = client.action("/unit/invoices", "withdraw_requests", [wrong.id])
    assert "已完成 1 条" in flashed(client, response)
    [wrong] = all_invoices()
    assert wrong.status is IS.withdrawn
    assert audit(wrong.id)[-1] == ("withdraw", "requested", "withdrawn", UNIT_A)
    assert not invoices.active_invoice_exists(order.id)
    assert "已撤回" in text_of(client.get(f"/unit/invoices/show/{wrong.id}"))
    # Finance cannot issue a withdrawn request any more.
    with pytest.raises(invoices.WorkflowError):
        invoices.issue_paper(actor_for_user(world.user("finance")), wrong.id, "44001234")
    # The order offers a request again, and the unit asks with the right data.
    assert f"/unit/invoices/request/{order.id}" in client.get("/unit/orders/list/").text
    assert ask(client, order, **special_buyer(world)).status_code == 302
    assert [i.status for i in all_invoices()] == [IS.withdrawn, IS.requested]


def test_an_issued_invoice_cannot_be_withdrawn_and_the_unit_is_told_why(login, world):
    invoice = paper_invoice(world, login, mailed=False)
    client = login(UNIT_A)
    response = client.action("/unit/invoices", "withdraw_requests", [invoice.id])
    page = flashed(client, response)
    assert "44001234" in page and "发票已开具，无法撤回，请申请作废" in page
    assert all_invoices()[0].status is IS.issued
    assert [a[0] for a in audit(invoice.id)] == ["request", "issue"]


# --------------------------------------------------------------------- batch refunds -------

@pytest.fixture
def two_orders(login, world):
    """王伟's order is invoiced (an e-invoice), 李娜's is not; both were paid and cancelled."""
    client = login(UNIT_A)
    finance = login("finance")
    orders = []
    for name in ("王伟", "李娜"):
        order = order_persons(client, world, name)
        declare_transfer(client, order)
        finance.action("/finance/transfers", "confirm_transfers", [transfer(order).id])
        orders.append(order)
    invoices.request_invoice(actor_for_user(world.user(UNIT_A)), orders[0].id,
                             m.InvoiceKind.e_normal, invoices.BuyerData())
    client.action("/unit/persons", "cancel_persons",
                  [world.person("王伟").id, world.person("李娜").id])
    db.session.expire_all()
    assert world.person("王伟").status is m.PersonStatus.cancelled
    return orders


def test_a_batch_refund_refunds_what_it_can_and_names_each_refused_person_and_order(
        login, world, two_orders):
    invoiced, free = two_orders
    client = login(UNIT_A)
    persons = [world.person(n) for n in ("王伟", "李娜", "张强")]
    response = client.post("/unit/refunds/request", data={
        "person": [str(p.id) for p in persons], "route": "original"})
    page = flashed(client, response)
    refund = db.session.scalars(sa.select(m.Refund)).one()
    assert refund.amount_fen == 20000 and refund.payment_id == transfer(free).id
    items = db.session.scalars(sa.select(m.RefundItem.order_item_id)).all()
    assert items == [db.session.scalar(sa.select(m.OrderItem.id).where(
        m.OrderItem.person_registration_id == world.person("李娜").id))]
    assert "已完成 1 条" in page and "退款申请已提交财务" in page
    number = invoiced.number
    assert f"王伟（订单 {number}）: 订单 {number} 已开票：请先完成退票，再申请退款" in page
    assert "张强: 本单位未为此人员支付证件费" in page
    assert [a.record_id for a in db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.record_type == "refund"))] == [refund.id]

    # Asked again: 李娜 is already being refunded, 王伟 still needs the invoice voided.
    response = client.post("/unit/refunds/request", data={
        "person": [str(persons[0].id), str(persons[1].id)], "route": "original"})
    page = flashed(client, response)
    assert "李娜" in page and "已在退款中" in page and "王伟" in page
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Refund)) == 1


def test_refund_to_another_account_refuses_only_the_persons_not_paid_by_transfer(
        login, world, two_orders):
    db.session.execute(sa.update(m.Payment).where(m.Payment.id == transfer(two_orders[1]).id)
                       .values(channel=m.PaymentChannel.alipay))
    db.session.commit()
    client = login(UNIT_A)
    response = client.post("/unit/refunds/request", data={
        "person": [str(world.person("李娜").id)], "route": "other_account",
        "account_name": "浦东医疗", "account_bank": "建设银行", "account_no": "6222"})
    listed = client.get(response.headers["Location"])
    markup, page = listed.get_data(as_text=True), text_of(listed)
    assert "李娜" in page and "只有银行转账可以退至其他账户" in page
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Refund)) == 0
    # Nothing the unit chose is lost: the person stays ticked, the route and account typed.
    li = world.person("李娜").id
    assert re.search(rf'value="{li}" id="refund-{li}" checked', markup)
    assert re.search(r'value="other_account" checked', markup)
    for typed in ('value="浦东医疗"', 'value="建设银行"', 'value="6222"'):
        assert typed in markup
    # Only once: the next visit starts afresh.
    assert 'value="other_account" checked' not in client.get(
        "/unit/refunds/list/").get_data(as_text=True)
    # Another unit's persons are not named, nothing is refunded.
    assert login(UNIT_B).post("/unit/refunds/request", data={
        "person": [str(world.person("李娜").id)], "route": "original"}).status_code == 404


# ------------------------------------------------------------------- labels in zh ----------

def test_every_invoice_and_refund_header_is_chinese(login, world, paid_and_cancelled):
    client = login(UNIT_A)
    order = db.session.scalars(sa.select(m.Order).where(
        m.Order.status == m.OrderStatus.paid)).first()
    form = client.get(f"/unit/invoices/request/{order.id}")
    client.post("/unit/refunds/request", data={
        "person": [str(world.person("王伟").id)], "route": "original"})
    refund = db.session.scalars(sa.select(m.Refund)).one()
    paper = paper_invoice(world, login, mailed=True)
    finance = login("finance")
    pages = {
        "unit refunds": client.get("/unit/refunds/list/"),
        "unit refund": client.get(f"/unit/refunds/show/{refund.id}"),
        "finance refunds": finance.get("/finance/refunds/list/"),
        "finance refund": finance.get(f"/finance/refunds/show/{refund.id}"),
        "unit invoices": client.get("/unit/invoices/list/"),
        "finance invoices": finance.get("/finance/invoices/list/"),
        "request form": form,
        "unit invoice": client.get(f"/unit/invoices/show/{paper.id}"),
        "logistics": client.get(f"/unit/invoices/logistics/{paper.id}"),
        "finance invoice": finance.get(f"/finance/invoices/show/{paper.id}"),
        "issue form": finance.get(f"/finance/invoices/issue/{paper.id}"),
        "mail form": finance.get(f"/finance/invoices/mail/{paper.id}"),
    }
    for name, response in pages.items():
        assert response.status_code == 200, name
        html = response.data.decode()
        headers = re.findall(r"<th[^>]*>(.*?)</th>", html, flags=re.S)
        labels = re.findall(r"<label[^>]*>(.*?)</label>", html, flags=re.S)
        for cell in headers + labels:
            text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", cell)).strip()
            # Every header in Chinese: no English word of two letters or more.
            assert not re.search(r"[A-Za-z]{2,}", text), f"{name}: {text!r}"
    assert "退款方式" in text_of(pages["unit refunds"])
    assert "退款方式" in text_of(pages["finance refunds"])
    assert "Route" not in text_of(pages["finance refunds"])
