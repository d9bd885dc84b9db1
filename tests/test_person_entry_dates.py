"""Entry dates (订单生成前，专业观众可修改入场日期): a submitted person's entry dates, and only
they, change until the person is in an order; afterwards the reason is shown, not a form. Every
change is audited with from and to."""
from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from app import models as m
from app.extensions import db
from tests.conftest import UNIT_A, UNIT_B, text_of

PS = m.PersonStatus


def audits(registration_id: int) -> list[m.AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.record_type == "person_registration",
        m.AuditEvent.record_id == registration_id,
        m.AuditEvent.action == "change_entry_dates")))


def test_an_awaiting_payment_person_changes_only_its_entry_dates(login, world):
    wang = world.person("王伟")
    assert wang.status is PS.awaiting_payment
    before = [d.isoformat() for d in wang.entry_dates]
    client = login(UNIT_A)
    form = client.get(f"/unit/persons/edit/{wang.id}")
    assert form.status_code == 200
    html = form.data.decode()
    assert 'name="entry_dates"' in html and 'name="name"' not in html
    assert 'name="id_number"' not in html
    assert "只能修改入场日期" in text_of(form)
    response = client.post(f"/unit/persons/edit/{wang.id}", data={
        "entry_dates": ["2022-11-08", "2022-11-09"], "name": "改名"})
    assert response.status_code == 302
    db.session.expire_all()
    assert wang.entry_dates == [date(2022, 11, 8), date(2022, 11, 9)]
    assert wang.person.name == "王伟" and wang.status is PS.awaiting_payment
    [event] = audits(wang.id)
    assert event.detail == {"from": before, "to": ["2022-11-08", "2022-11-09"]}
    assert event.actor_name


def test_entry_dates_outside_the_exhibition_or_none_are_refused(login, world):
    wang = world.person("王伟")
    days = wang.entry_days
    client = login(UNIT_A)
    outside = client.post(f"/unit/persons/edit/{wang.id}",
                          data={"entry_dates": ["2022-11-05", "2022-11-11"]})
    assert outside.status_code == 400 and "入场日期" in text_of(outside)
    none = client.post(f"/unit/persons/edit/{wang.id}", data={})
    assert none.status_code == 400 and "请至少选择一个入场日期" in text_of(none)
    db.session.expire_all()
    assert wang.entry_days == days and audits(wang.id) == []


def test_a_person_in_an_unpaid_order_is_refused_with_the_order_named(login, world):
    chen = world.person("陈静")
    assert chen.status is PS.in_order
    days = chen.entry_days
    client = login(UNIT_A)
    page = client.get(f"/unit/persons/edit/{chen.id}")
    assert page.status_code == 302 and f"/unit/persons/show/{chen.id}" in page.headers["Location"]
    shown = text_of(client.get(page.headers["Location"]))
    assert "入场日期已不能修改" in shown and "O2022000001" in shown and "请先取消该订单" in shown
    posted = client.post(f"/unit/persons/edit/{chen.id}", data={"entry_dates": ["2022-11-10"]})
    assert posted.status_code == 302
    db.session.expire_all()
    assert chen.entry_days == days and audits(chen.id) == []


def test_entry_dates_change_again_once_the_order_is_cancelled(login, world):
    chen = world.person("陈静")
    order = db.session.scalars(sa.select(m.Order).where(m.Order.number == "O2022000001")).one()
    client = login(UNIT_A)
    client.post(f"/unit/order/{order.id}/cancel")
    db.session.expire_all()
    assert chen.status is PS.awaiting_payment
    response = client.post(f"/unit/persons/edit/{chen.id}", data={"entry_dates": ["2022-11-10"]})
    assert response.status_code == 302
    db.session.expire_all()
    assert chen.entry_dates == [date(2022, 11, 10)] and len(audits(chen.id)) == 1


def test_a_paid_person_keeps_its_entry_dates(login, world):
    chen = world.person("陈静")
    order = db.session.scalars(sa.select(m.Order).where(m.Order.number == "O2022000001")).one()
    order.status = m.OrderStatus.paid
    chen.status = PS.awaiting_review
    db.session.commit()
    client = login(UNIT_A)
    page = client.get(f"/unit/persons/edit/{chen.id}")
    assert "证件费已随订单 O2022000001 支付" in text_of(client.get(page.headers["Location"]))


def test_a_reused_badge_keeps_its_entry_dates(login, world):
    client = login(UNIT_A)
    huang = db.session.scalars(sa.select(m.Person).where(m.Person.name == "黄磊")).one()
    client.post("/unit/previous-persons/", data={"person": [str(huang.id)],
                                                 "reuse": [str(huang.id)]})
    reuse = world.person("黄磊")
    client.action("/unit/persons", "submit_persons", [reuse.id])
    db.session.expire_all()
    assert reuse.status is PS.awaiting_lock
    days = reuse.entry_days
    page = client.get(f"/unit/persons/edit/{reuse.id}")
    assert "复用的证件保留其上印制的入场日期" in text_of(client.get(page.headers["Location"]))
    client.post(f"/unit/persons/edit/{reuse.id}", data={"entry_dates": ["2022-11-10"]})
    db.session.expire_all()
    assert reuse.entry_days == days


def test_a_submitted_person_changes_its_dates_but_not_after_approval(login, world):
    zhao = world.person("赵敏")                      # unit B, submitted
    client = login(UNIT_B)
    assert client.post(f"/unit/persons/edit/{zhao.id}",
                       data={"entry_dates": ["2022-11-07"]}).status_code == 302
    db.session.expire_all()
    assert zhao.entry_dates == [date(2022, 11, 7)]
    zhao.status, zhao.tag = PS.approved, m.Tag.visitor
    db.session.commit()
    page = client.get(f"/unit/persons/edit/{zhao.id}")
    shown = text_of(client.get(page.headers["Location"]))
    assert f"入场日期已不能修改：当前状态为“{PS.approved.label}”" in shown


def test_no_other_unit_or_role_changes_the_entry_dates(login, world):
    wang = world.person("王伟")
    days = wang.entry_days
    assert login(UNIT_B).post(f"/unit/persons/edit/{wang.id}",
                              data={"entry_dates": ["2022-11-10"]}).status_code == 404
    for role in ("sh-delegation", "finance"):
        response = login(role).post(f"/unit/persons/edit/{wang.id}",
                                    data={"entry_dates": ["2022-11-10"]})
        assert response.status_code in (302, 403, 404)
    db.session.expire_all()
    assert wang.entry_days == days and audits(wang.id) == []
