"""In Chromium: the unit voids an e-invoice through the reason dialog (an empty reason is
refused in the dialog, naming the field; with a reason the invoice is reversed by a red-letter
invoice, listed with its negative amount), and withdraws a paper invoice request finance has not
issued yet."""
from __future__ import annotations

from app import models as m
from app.demo import DEMO_PASSWORD
from tests.conftest import UNIT_A
from tests.test_browser_journeys import log_in, shot
from tests.test_invoices import all_invoices, ask, e_invoice, pay_by_qr, special_buyer


def run_action(page, name: str) -> None:
    page.click("button.dropdown-toggle:has-text('操作')")
    page.click(f"a.{name}_menu_item")


def test_the_unit_voids_an_e_invoice_through_the_reason_dialog(page, world, login):
    original = e_invoice(world, login)
    confirmations = []

    def answer(dialog):
        confirmations.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    log_in(page, UNIT_A, DEMO_PASSWORD)
    page.goto("/unit/invoices/list/")
    page.check(f"input.action_check[value='{original.id}']")
    run_action(page, "request_void")
    page.wait_for_selector("#ciie-reason-modal", state="visible")
    assert page.inner_text("#ciie-reason-label") == "作废原因：为什么要作废这张发票？"
    assert "单位将看到" not in page.inner_text("#ciie-reason-modal")

    # Empty (or blank): refused in the dialog with a message naming the field; nothing sent.
    page.fill("#ciie-reason-text", "   ")
    page.click("#ciie-reason-ok")
    error = page.wait_for_selector("#ciie-reason-error", state="visible")
    assert error.inner_text() == "请填写作废原因。"
    shot(page, "invoice-void-01-empty-reason")
    assert confirmations == [] and [i.status for i in all_invoices()] == [
        m.InvoiceStatus.issued]

    page.fill("#ciie-reason-text", "抬头需要更换为集团公司")
    page.click("#ciie-reason-ok")
    page.wait_for_selector(".alert-success")
    assert len(confirmations) == 1
    first, reversal = all_invoices()
    assert first.status is m.InvoiceStatus.voided and reversal.reversal_of_id == first.id
    row = page.inner_text(f"#list-UnitInvoiceView tr[data-pk='{reversal.id}']")
    assert "红字发票" in row and "-¥200.00" in row and first.number in row
    shot(page, "invoice-void-02-red-letter")


def test_the_unit_withdraws_a_paper_request_not_issued_yet(page, world, login):
    order = pay_by_qr(world)
    assert ask(login(UNIT_A), order, **special_buyer(world)).status_code == 302
    [invoice] = all_invoices()
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, UNIT_A, DEMO_PASSWORD)
    page.goto("/unit/invoices/list/")
    page.check(f"input.action_check[value='{invoice.id}']")
    run_action(page, "withdraw_requests")
    page.wait_for_selector(".alert-success")
    assert "已撤回" in page.inner_text(f"#list-UnitInvoiceView tr[data-pk='{invoice.id}']")
    assert all_invoices()[0].status is m.InvoiceStatus.withdrawn
    shot(page, "invoice-withdrawn")
    # The unit may ask again for the same order.
    page.click("#request-invoice")
    page.wait_for_selector(f"a.ciie-request-invoice[href$='/request/{order.id}']")
