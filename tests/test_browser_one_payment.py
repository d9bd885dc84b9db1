"""In Chromium (issue 12, one payment per order): the unit declares a bank transfer with its
voucher; while it waits for finance no QR code, B2B or second transfer is offered, only the
withdrawal; the unit withdraws it and pays by WeChat Pay QR code through the sandbox."""
from __future__ import annotations

import os

import sqlalchemy as sa

from app import models as m
from app.extensions import db
from tests.conftest import ROOT, UNIT_A
from tests.test_browser_smoke import log_in
from tests.test_gateways import demo_order, sandbox, sandbox_dir  # noqa: F401  (fixtures)
from tests.test_scoping import PDF


def shot(page, name: str) -> None:
    os.makedirs(os.path.join(ROOT, "test-artifacts"), exist_ok=True)
    page.screenshot(path=os.path.join(ROOT, "test-artifacts", f"{name}.png"), full_page=True)


def test_a_waiting_transfer_is_the_only_way_until_it_is_withdrawn(page, world,
                                                                 sandbox):  # noqa: F811
    order = demo_order()
    log_in(page, UNIT_A)
    page.goto(f"/unit/order/{order.id}")
    assert page.is_visible("#pay-online") and page.is_visible("#submit-transfer")
    page.fill("input[name=payer_bank]", "工商银行浦东支行")
    page.fill("input[name=payer_account]", "1001 2345 6789")
    page.fill("input[name=remitted_on]", "2022-09-14")
    page.set_input_files("input[name=voucher]", files=[{
        "name": "voucher.pdf", "mimeType": "application/pdf", "buffer": PDF}])
    page.click("#submit-transfer")

    # The declaration as made, and nothing else to pay with.
    page.wait_for_selector("#transfer-waiting")
    assert page.inner_text("#waiting-amount") == "¥200.00"
    assert "上海浦东医疗器械有限公司" in page.inner_text("#waiting-payer")
    assert page.inner_text("#waiting-date") == "2022-09-14"
    for offer in ("#pay-online", "#submit-transfer", "#cancel-order"):
        assert page.locator(offer).count() == 0, offer
    shot(page, "one-payment-01-transfer-waits")
    # The voucher opens from the page.
    voucher = page.request.get(page.get_attribute("#waiting-voucher", "href"))
    assert voucher.status == 200 and voucher.body() == PDF

    # The online payment page offers no QR code or B2B either, and says why.
    page.goto(f"/unit/orders/pay/{order.id}")
    page.wait_for_selector("#pay-refusal")
    assert "撤回" in page.inner_text("#pay-refusal")
    assert page.locator("#pay-form button").count() == 0
    shot(page, "one-payment-02-no-qr-while-waiting")

    # Withdrawn, every way is offered again.
    page.click("#open-order")
    page.wait_for_selector("#withdraw-declaration")
    page.click("#withdraw-declaration")
    page.wait_for_selector(".alert-success")
    assert page.locator("#transfer-waiting").count() == 0
    assert page.is_visible("#pay-online")
    shot(page, "one-payment-03-withdrawn")

    # Pay by WeChat Pay QR code; the payer's phone is a second tab on the sandbox's page.
    page.click("#pay-online-link")
    page.wait_for_selector("#pay-order")
    page.click("#pay-wechat")
    page.wait_for_selector("#payment-qr")
    with page.context.expect_page() as opened:
        page.click("#sandbox-open")
    phone = opened.value
    phone.wait_for_selector("#sandbox-pay")
    phone.click("#sandbox-pay")
    phone.wait_for_selector("#sandbox-answer")
    page.wait_for_selector("#payment-paid", timeout=20000)
    shot(page, "one-payment-04-paid-by-qr")

    db.session.expire_all()
    attempts = db.session.scalars(sa.select(m.Payment).where(
        m.Payment.order_id == order.id).order_by(m.Payment.id)).all()
    assert [(p.channel, p.status) for p in attempts] == [
        (m.PaymentChannel.transfer, m.PaymentStatus.withdrawn),
        (m.PaymentChannel.wechat, m.PaymentStatus.confirmed)]
    assert demo_order().status is m.OrderStatus.paid
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Overpayment)) == 0
