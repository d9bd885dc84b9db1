"""In Chromium: a unit pays its order by Alipay QR code through the payment sandbox, and its
page moves on by itself once the sandbox's notification has confirmed the payment."""
from __future__ import annotations

import os

import sqlalchemy as sa

from app import models as m
from app.extensions import db
from tests.conftest import ROOT, UNIT_A
from tests.test_browser_smoke import log_in
from tests.test_gateways import sandbox, sandbox_dir  # noqa: F401  (fixtures)


def test_unit_pays_by_qr_code_through_the_sandbox(page, world, sandbox):  # noqa: F811
    log_in(page, UNIT_A)
    page.goto("/unit/orders/list/")
    page.click("a.ciie-pay")
    page.wait_for_selector("#pay-order")
    assert "O2022000001" in page.inner_text("#order-number")
    page.click("#pay-alipay")
    page.wait_for_selector("#payment-qr")
    assert page.is_visible("#payment-waiting")
    os.makedirs(os.path.join(ROOT, "test-artifacts"), exist_ok=True)
    page.screenshot(path=os.path.join(ROOT, "test-artifacts", "payment-alipay-qr.png"))

    # The payer's phone, here a second tab: the sandbox's page behind the QR code.
    with page.context.expect_page() as opened:
        page.click("#sandbox-open")
    phone = opened.value
    phone.wait_for_selector("#sandbox-pay")
    assert "200.00" in phone.inner_text("#sandbox-amount")
    phone.click("#sandbox-pay")
    phone.wait_for_selector("#sandbox-answer")
    assert "success" in phone.inner_text("#sandbox-answer")

    # The unit's page polls and shows the payment confirmed, without a click.
    page.wait_for_selector("#payment-paid", timeout=20000)
    page.screenshot(path=os.path.join(ROOT, "test-artifacts", "payment-alipay-paid.png"))

    db.session.expire_all()
    order = db.session.scalars(sa.select(m.Order).where(m.Order.number == "O2022000001")).one()
    assert order.status is m.OrderStatus.paid
    assert world.person("陈静").status is m.PersonStatus.awaiting_review
