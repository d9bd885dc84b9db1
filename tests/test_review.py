"""Security review: reviewers see persons awaiting review and nothing else, pass or fail them
(with a reason code), one or many; failed persons' units are told and may ask for refunds."""
from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from app import clock
from app import models as m
from app.extensions import db
from tests.conftest import DEMO_NOW, UNIT_A, sms_messages, text_of
from tests.test_browser_smoke import log_in

PS = m.PersonStatus


def awaiting(world, *names: str) -> list[int]:
    """Put persons in review (test data: as if locked or paid), waiting since 10 days ago."""
    ids = [world.person(n).id for n in names]
    db.session.execute(sa.update(m.PersonRegistration).where(m.PersonRegistration.id.in_(ids))
                       .values(status=PS.awaiting_review, tag=m.Tag.staff,
                               status_changed_at=DEMO_NOW - timedelta(days=10)))
    db.session.commit()
    return ids


def test_pass_and_fail_with_reason_codes(login, world, smtp_server):
    zhang, wang = world.person("张强").id, awaiting(world, "王伟")[0]
    client = login("reviewer")
    response = client.action("/review/queue", "pass_review", [zhang])
    assert "已完成 1 条记录" in text_of(client.get(response.headers["Location"]))
    client.action("/review/queue", "fail_review_identity_mismatch", [wang])
    db.session.expire_all()
    assert world.person("张强").status is PS.approved
    assert world.person("王伟").status is PS.rejected
    decisions = {d.person_registration_id: d for d in db.session.scalars(
        sa.select(m.ReviewDecision))}
    assert decisions[zhang].outcome is m.ReviewOutcome.passed
    assert decisions[wang].reason is m.ReviewReason.identity_mismatch
    assert decisions[wang].reviewer_id == world.user("reviewer").id
    audit = db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.action == "review_failed")).one()
    assert (audit.from_state, audit.to_state, audit.reason) == (
        "awaiting_review", "rejected", "identity_mismatch")
    # The unit is told, by e-mail and SMS, naming the person and the reason.
    [mail] = [msg for msg in smtp_server.wait_for(1)
              if msg["Subject"] == "人员信息审核未通过"]
    assert "王伟" in mail.get_content() and "身份信息不符" in mail.get_content()
    assert any("王伟" in sms["text"] for sms in sms_messages())


def test_reviewers_reach_only_persons_awaiting_review(login, world):
    client = login("reviewer")
    draft, paying = world.person("刘洋"), world.person("李娜")
    assert client.action("/review/queue", "pass_review", [draft.id]).status_code == 404
    assert client.action("/review/queue", "fail_review_other",
                         [paying.id, world.person("张强").id]).status_code == 404
    db.session.expire_all()
    assert world.person("张强").status is PS.awaiting_review
    assert world.person("李娜").status is PS.awaiting_payment
    page = text_of(client.get("/review/queue/list/"))
    assert "¥" not in page and "O2022000001" not in page    # no payment data
    for url in ("/finance/orders/list/", "/finance/transfers/list/", "/unit/orders/list/",
                "/unit/refunds/list/", "/delegation/persons/list/"):
        assert client.get(url).status_code == 403, url
    assert login(UNIT_A).action("/review/queue", "pass_review",
                                [world.person("张强").id]).status_code == 403


def test_queue_shows_waiting_time_against_the_usual_days(login, world):
    awaiting(world, "王伟")
    overseas = db.session.scalars(sa.select(m.PersonRegistration).join(m.Person).where(
        m.Person.name == "John Smith")).one()
    db.session.execute(sa.update(m.PersonRegistration)
                       .where(m.PersonRegistration.id == overseas.id)
                       .values(status=PS.awaiting_review, tag=m.Tag.visitor,
                               status_changed_at=DEMO_NOW - timedelta(days=10)))
    db.session.commit()
    page = login("reviewer").get("/review/queue/list/").data.decode()
    assert "10 / 7 天" in page and "10 / 15 天" in page
    assert 'class="text-danger">10 / 7' in page      # mainland: overdue
    assert 'class="text-muted">10 / 15' in page      # overseas: within the usual time
    only_overseas = login("reviewer").get(
        "/review/queue/list/?_flt_0_unit_region=overseas").data.decode()
    assert "John Smith" in only_overseas and "王伟" not in only_overseas


def test_a_failed_paid_person_becomes_refundable(login, world):
    clock.set_now(datetime.fromisoformat("2022-09-16T10:00:00+08:00"))
    from tests.test_money import declare_transfer, order_persons, transfer

    unit = login(UNIT_A)
    order = order_persons(unit, world, "王伟")
    declare_transfer(unit, order)
    login("finance").action("/finance/transfers", "confirm_transfers", [transfer(order).id])
    login("reviewer").action("/review/queue", "fail_review_security_concern",
                             [world.person("王伟").id])
    page = text_of(unit.get("/unit/refunds/list/"))
    assert "王伟" in page and "审核不通过" in page


def test_reviewer_passes_a_batch_in_the_browser(page, world):
    ids = awaiting(world, "王伟", "李娜")
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    log_in(page, "reviewer")
    page.goto("/review/queue/list/")
    for pid in ids:
        page.check(f"input.action_check[value='{pid}']")
    page.click("button.dropdown-toggle:has-text('操作')")
    page.click("a.pass_review_menu_item")
    page.wait_for_selector(".alert-success")
    assert "2 条" in dialogs[-1]
    db.session.expire_all()
    assert {world.person("王伟").status, world.person("李娜").status} == {PS.approved}


def test_queue_costs_the_same_statements_for_one_delegation_or_several(login, world):
    from tests.test_events import statements

    awaiting(world, "张强")
    client = login("reviewer")
    one = statements(client, "/review/queue/list/")
    # Persons of three more delegations: each row shows its delegation, read with the page.
    awaiting(world, "周杰", "郑浩", "吴芳")
    page = client.get("/review/queue/list/")
    assert all(name in text_of(page) for name in ("周杰", "郑浩", "吴芳"))
    assert statements(client, "/review/queue/list/") == one
