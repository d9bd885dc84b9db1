"""Registering afresh after every returning-unit check failed is a claim, not a takeover: the
account, its password and its contacts stay as they are until the delegation the claimant chose
confirms who is asking (docs/account-claims.md)."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from app import models as m
from app.demo import DEMO_PASSWORD
from app.extensions import db
from tests.conftest import Client, text_of
from tests.test_registration import RETURNING, new_unit_form, returning

ATTACKER_PASSWORD = "Takeover99"


@pytest.fixture(autouse=True)
def fresh_limits(app):
    """Each test fails every check again (17 posts of the public forms, limited to 30 a minute
    from one address): start and leave each with the limiter's counts empty."""
    app.appbuilder.sm.limiter.reset()
    yield
    app.appbuilder.sm.limiter.reset()


def fail_every_check(client: Client) -> None:
    for _ in range(5):
        returning(client, "password", password="wrong-password")
    for method in ("sms", "email"):
        returning(client, f"send_{method}")
        for _ in range(5):
            returning(client, f"check_{method}", **{f"code_{method}": "000000"})


def claim(client: Client, **changes):
    form = new_unit_form(uscc=RETURNING, name="冒名食品有限公司", mobile="13700000001",
                         email="attacker@example.com", password=ATTACKER_PASSWORD,
                         confirm=ATTACKER_PASSWORD)
    form.update(changes)
    return client.post("/register/new?afresh=1", data=form)


def unit_row() -> m.Unit:
    db.session.expire_all()
    return db.session.scalars(sa.select(m.Unit).where(m.Unit.uscc == RETURNING)).one()


def logs_in(app, password: str) -> bool:
    response = Client(app).post("/login/", data={"username": RETURNING, "password": password})
    return response.status_code == 302


def current_registration() -> m.UnitRegistration | None:
    return db.session.scalars(
        sa.select(m.UnitRegistration).join(m.Unit).join(m.Edition)
        .where(m.Unit.uscc == RETURNING, m.Edition.is_current)).one_or_none()


def the_claim() -> m.AccountClaim:
    db.session.expire_all()
    return db.session.scalars(sa.select(m.AccountClaim)).one()


def test_register_afresh_attack_leaves_the_owner_in_control(app, world, smtp_server):
    """The exact attack of issue 10: fail every check on purpose, then register afresh with
    the victim's credit code and a password of one's own."""
    before = unit_row()
    name, mobile, email = before.name, before.mobile, before.email
    attacker = Client(app)
    fail_every_check(attacker)
    response = claim(attacker)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/register/claimed")
    assert "交易团" in text_of(attacker.get("/register/claimed"))
    # Nobody is logged in, the owner's password works, the attacker's does not.
    assert attacker.get("/unit/info/").status_code in (302, 401, 403)
    assert logs_in(app, DEMO_PASSWORD) and not logs_in(app, ATTACKER_PASSWORD)
    unit = unit_row()
    assert (unit.name, unit.mobile, unit.email) == (name, mobile, email)
    assert current_registration() is None
    # The attempt is audited with where it came from; the claim waits for the delegation.
    [audit] = db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.record_type == "unit", m.AuditEvent.action == "claim_afresh")).all()
    assert audit.record_id == unit.id and audit.detail["address"] == "127.0.0.1"
    pending = the_claim()
    assert pending.status is m.ClaimStatus.pending and pending.email == "attacker@example.com"
    assert not pending.password_hash.endswith(ATTACKER_PASSWORD)
    # The owner is told at the contacts on file, the claimant at the contacts it gave.
    recipients = {msg["To"] for msg in smtp_server.wait_for(2)}
    assert {"foods@demo.ciie.local", "attacker@example.com"} <= recipients
    # The owner, logged in with its own password, still does not see the claimant's data.
    owner = Client(app, RETURNING)
    assert "attacker@example.com" not in owner.get("/api/v1/persons/").get_data(as_text=True)


def test_a_claim_cannot_skip_the_checks(app, world):
    response = claim(Client(app))
    assert response.status_code == 409 or "我是往届进博会观众" in text_of(response)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.AccountClaim)) == 0
    assert logs_in(app, DEMO_PASSWORD)


def test_one_claim_waits_at_a_time(app, world):
    client = Client(app)
    fail_every_check(client)
    assert claim(client).status_code == 302
    again = claim(client, email="other@example.com")
    assert "已在等待" in text_of(again)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.AccountClaim)) == 1


def test_delegation_confirms_and_the_account_is_handed_over(app, world, smtp_server, login):
    client = Client(app)
    fail_every_check(client)
    claim(client)
    pending = the_claim()
    smtp_server.clear()
    delegation = login("sh-delegation")
    page = text_of(delegation.get("/delegation/claims/list/"))
    assert "冒名食品有限公司" in page and "上海进口食品有限公司" in page
    show = text_of(delegation.get(f"/delegation/claims/show/{pending.id}"))
    assert "f****@demo.ciie.local" in show and "attacker@example.com" in show
    response = delegation.action("/delegation/claims", "approve_claims", [pending.id])
    assert response.status_code == 302
    decided = the_claim()
    assert decided.status is m.ClaimStatus.approved
    assert decided.decided_by_id == world.user("sh-delegation").id
    # The claimant's password and contacts now hold; the old password no longer works.
    assert logs_in(app, ATTACKER_PASSWORD) and not logs_in(app, DEMO_PASSWORD)
    unit = unit_row()
    assert (unit.name, unit.email) == ("冒名食品有限公司", "attacker@example.com")
    registration = current_registration()
    assert registration.history_hidden and registration.status is m.UnitStatus.draft
    actions = set(db.session.scalars(sa.select(m.AuditEvent.action).where(
        m.AuditEvent.record_id.in_([unit.id, pending.id, registration.id]))))
    assert {"approve", "account_handed_over", "create"} <= actions
    # The old contacts hear of the hand-over, the claimant of the approval.
    recipients = {msg["To"] for msg in smtp_server.wait_for(2)}
    assert {"foods@demo.ciie.local", "attacker@example.com"} <= recipients


def test_after_the_hand_over_earlier_editions_stay_hidden(app, world, login):
    client = Client(app)
    fail_every_check(client)
    claim(client)
    login("sh-delegation").action("/delegation/claims", "approve_claims", [the_claim().id])
    new_owner = Client(app, RETURNING, ATTACKER_PASSWORD)
    headers = new_owner.api_login(RETURNING, ATTACKER_PASSWORD)
    for url in ("/api/v1/persons/", "/api/v1/units/"):
        response = new_owner.get(url, headers=headers)
        assert response.status_code == 200, url
        body = response.get_data(as_text=True)
        assert "钱峰" not in body and "T04000002" not in body, url
    assert "钱峰" not in text_of(new_owner.get("/unit/previous-persons/"))
    assert "钱峰" not in text_of(new_owner.get("/unit/badges/list/"))
    # One of the earlier persons, by its id, is out of reach too.
    earlier = world.person("钱峰")
    assert new_owner.get(f"/api/v1/persons/{earlier.id}", headers=headers).status_code == 404


def test_claims_are_decided_only_by_the_chosen_delegation(app, world, login):
    client = Client(app)
    fail_every_check(client)
    claim(client)
    pending = the_claim()
    zhejiang = login("zj-delegation")
    assert "冒名食品有限公司" not in text_of(zhejiang.get("/delegation/claims/list/"))
    assert zhejiang.get(f"/delegation/claims/show/{pending.id}").status_code == 404
    assert zhejiang.action("/delegation/claims", "approve_claims",
                           [pending.id]).status_code == 404
    # The claimant chose Xuhui: Pudong's sub-delegation does not decide it.
    assert "冒名食品有限公司" not in text_of(login("sh-pudong").get("/delegation/claims/list/"))
    for other in ("finance", "reviewer", "91310115MA1K4AB30U"):
        assert login(other).get("/delegation/claims/list/").status_code in (302, 403, 404)
    assert the_claim().status is m.ClaimStatus.pending
    assert logs_in(app, DEMO_PASSWORD)


def test_refusing_a_claim_needs_a_reason_and_changes_nothing(app, world, smtp_server, login):
    client = Client(app)
    fail_every_check(client)
    claim(client)
    pending = the_claim()
    delegation = login("sh-delegation")
    delegation.action("/delegation/claims", "reject_claims", [pending.id], reason="")
    assert the_claim().status is m.ClaimStatus.pending
    smtp_server.clear()
    delegation.action("/delegation/claims", "reject_claims", [pending.id],
                      reason="单位电话核实不是本单位")
    refused = the_claim()
    assert refused.status is m.ClaimStatus.rejected and refused.reason == "单位电话核实不是本单位"
    assert logs_in(app, DEMO_PASSWORD) and not logs_in(app, ATTACKER_PASSWORD)
    [message] = smtp_server.wait_for(1)
    assert message["To"] == "attacker@example.com"
    assert "单位电话核实不是本单位" in message.get_content()
    # A refused claim cannot be approved afterwards.
    delegation.action("/delegation/claims", "approve_claims", [pending.id])
    assert the_claim().status is m.ClaimStatus.rejected


def test_the_owner_proving_its_identity_withdraws_the_claim(app, world, login):
    client = Client(app)
    fail_every_check(client)
    claim(client)
    # An hour later the owner's tries are forgotten and its password proves who it is.
    app.extensions.pop("ciie_codes", None)
    owner = Client(app)
    assert returning(owner, "password", password=DEMO_PASSWORD).status_code == 302
    assert the_claim().status is m.ClaimStatus.withdrawn
    delegation = login("sh-delegation")
    delegation.action("/delegation/claims", "approve_claims", [the_claim().id])
    assert the_claim().status is m.ClaimStatus.withdrawn
    assert logs_in(app, DEMO_PASSWORD)


def test_a_claim_with_bad_input_is_refused_naming_the_field(app, world):
    client = Client(app)
    fail_every_check(client)
    for changes in ({"name": "冒名\x00食品"}, {"name": "长" * 201},
                    {"email": "a@" + "b" * 260 + ".cn"}, {"region": "mars"},
                    {"category": "pirate"}):
        response = claim(client, **changes)
        assert 400 <= response.status_code < 500, changes
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.AccountClaim)) == 0
    assert logs_in(app, DEMO_PASSWORD)
