"""In Chromium: after every earlier-edition check failed, a unit asks to register afresh; its
delegation confirms and hands the account over; the new owner logs in with its own password.
And a unit withdraws its bank transfer declaration from the order page."""
from __future__ import annotations

import io

import sqlalchemy as sa

from app import models as m
from app.codes import code_store
from app.extensions import db
from app.workflow import registration as reg
from tests.conftest import UNIT_A, Client
from tests.test_browser_delegation import run_action, shot
from tests.test_browser_journeys import log_in
from tests.test_browser_smoke import log_in as log_in_demo
from tests.test_money import order_persons
from tests.test_registration import RETURNING
from tests.test_scoping import PDF


def exhaust_every_check(app) -> None:
    """The three ways failed five times each (what tests/test_account_claims.py does by hand)."""
    with app.app_context():
        unit = reg.returning_unit(RETURNING)
        for method in reg.METHODS:
            for _ in range(reg.CODE_TRIES):
                code_store().incr(reg._key("tries", method, unit.id), reg.TRIES_TTL)


def test_claim_is_filled_decided_and_the_new_owner_logs_in(app, browser, live_server, world):
    app.appbuilder.sm.limiter.reset()
    exhaust_every_check(app)
    claimant = browser.new_context(base_url=live_server, locale="zh-CN").new_page()
    claimant.goto(f"/register/returning?login={RETURNING}")
    claimant.click("#register-afresh")
    claimant.wait_for_selector("#afresh-warning")
    claimant.select_option("#region", "domestic")
    claimant.select_option("#category", "enterprise")
    claimant.wait_for_selector("#delegation option:has-text('上海交易团')", state="attached")
    claimant.select_option("#delegation", label="上海交易团")
    claimant.wait_for_selector("#sub_delegation option:has-text('徐汇区交易分团')",
                               state="attached")
    claimant.select_option("#sub_delegation", label="徐汇区交易分团")
    claimant.fill("#name", "上海进口食品有限公司")
    assert claimant.input_value("#uscc") == RETURNING
    claimant.fill("#mobile", "13912340009")
    claimant.fill("#email", "new-owner@example.com")
    claimant.fill("#password", "NewOwner2022")
    claimant.fill("#confirm", "NewOwner2022")
    claimant.click("#register-submit")
    claimant.wait_for_selector("#register-claimed")
    shot(claimant, "claim-01-received")
    assert "交易团" in claimant.inner_text("#register-claimed")

    page = browser.new_context(base_url=live_server, locale="zh-CN").new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    log_in_demo(page, "sh-delegation")
    page.goto("/delegation/claims/list/")
    claim = db.session.scalars(sa.select(m.AccountClaim)).one()
    page.check(f"input.action_check[value='{claim.id}']")
    run_action(page, "核实身份并移交账号")
    page.wait_for_selector(".alert-success")
    shot(page, "claim-02-approved")
    db.session.expire_all()
    assert db.session.get(m.AccountClaim, claim.id).status is m.ClaimStatus.approved

    log_in(claimant, RETURNING, "NewOwner2022")
    claimant.goto("/unit/previous-persons/")
    assert "钱峰" not in claimant.content()


def test_unit_withdraws_its_transfer_declaration(app, page, world):
    order = order_persons(Client(app, UNIT_A), world, "王伟")
    log_in_demo(page, UNIT_A)
    page.goto(f"/unit/order/{order.id}")
    page.fill("input[name=payer_name]", "上海浦东医疗器械有限公司")
    page.fill("input[name=payer_bank]", "工商银行浦东支行")
    page.fill("input[name=payer_account]", "1001 2345 6789")
    page.fill("input[name=remitted_on]", "2022-09-14")
    page.set_input_files("input[name=voucher]", files=[{
        "name": "voucher.pdf", "mimeType": "application/pdf", "buffer": io.BytesIO(PDF).read()}])
    page.click("#submit-transfer")
    page.wait_for_selector(".withdraw-transfer")
    page.click(".withdraw-transfer")
    page.wait_for_selector(".alert-success")
    shot(page, "transfer-withdrawn")
    db.session.expire_all()
    [payment] = db.session.scalars(sa.select(m.Payment).where(
        m.Payment.order_id == order.id)).all()
    assert payment.status is m.PaymentStatus.withdrawn
    assert page.locator(".withdraw-transfer").count() == 0
