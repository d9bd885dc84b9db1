"""The database itself refuses what must never happen, whatever code writes to it."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app import models as m
from app.extensions import db


def refuses(stmt, params=None):
    with pytest.raises(IntegrityError):
        db.session.execute(stmt, params or {})
        db.session.flush()
    db.session.rollback()


def test_uscc_is_unique(world):
    unit = world.unit("浦东医疗")
    refuses(sa.insert(m.Unit).values(login="X1", uscc=unit.uscc, name="Copy",
                                     region="domestic", category="enterprise", language="zh"))


def test_domestic_unit_needs_uscc_and_category_must_fit_region(world):
    refuses(sa.insert(m.Unit).values(login="X2", uscc=None, name="No code", region="domestic",
                                     category="enterprise", language="zh"))
    refuses(sa.insert(m.Unit).values(login="X3", uscc=None, name="Wrong category",
                                     region="overseas", category="public_institution",
                                     language="en"))


def test_only_one_default_address_per_unit(world):
    unit = world.unit("浦东医疗")
    refuses(sa.insert(m.Address).values(unit_id=unit.id, slot=2, recipient="r", phone="1",
                                        province="p", city="c", detail="d", is_default=True))


def test_at_most_five_addresses_per_unit(world):
    unit = world.unit("浦东医疗")
    refuses(sa.insert(m.Address).values(unit_id=unit.id, slot=6, recipient="r", phone="1",
                                        province="p", city="c", detail="d", is_default=False))
    refuses(sa.insert(m.Address).values(unit_id=unit.id, slot=1, recipient="r", phone="1",
                                        province="p", city="c", detail="d", is_default=False))


def test_person_in_at_most_one_active_order(world):
    person = world.person("陈静")  # already in the demo's pending order
    order = db.session.scalars(sa.select(m.Order)).first()
    second = m.Order(number="O-second", edition_id=order.edition_id, unit_id=order.unit_id,
                     fee_fen=100, amount_fen=100)
    db.session.add(second)
    db.session.flush()
    refuses(sa.insert(m.OrderItem).values(order_id=second.id,
                                          person_registration_id=person.id, amount_fen=100,
                                          active=True))


def test_amounts_are_never_negative(world):
    order = db.session.scalars(sa.select(m.Order)).first()
    refuses(sa.update(m.Order).where(m.Order.id == order.id).values(amount_fen=-1))
    refuses(sa.insert(m.Payment).values(number="P-neg", order_id=order.id, channel="alipay",
                                        status="created", amount_fen=-5, refunded_fen=0))


def test_refunds_never_exceed_what_was_paid(world):
    order = db.session.scalars(sa.select(m.Order)).first()
    db.session.execute(sa.insert(m.Payment).values(
        number="P-1", order_id=order.id, channel="alipay", status="confirmed",
        amount_fen=20000, refunded_fen=0))
    db.session.commit()
    refuses(sa.update(m.Payment).where(m.Payment.number == "P-1")
            .values(refunded_fen=m.Payment.refunded_fen + 20001))
    db.session.execute(sa.update(m.Payment).where(m.Payment.number == "P-1")
                       .values(refunded_fen=20000))
    db.session.commit()
    assert db.session.scalar(sa.select(m.Payment.refunded_fen)
                             .where(m.Payment.number == "P-1")) == 20000


def test_one_confirmed_payment_per_order(world):
    order = db.session.scalars(sa.select(m.Order)).first()
    db.session.execute(sa.insert(m.Payment).values(
        number="P-a", order_id=order.id, channel="alipay", status="confirmed",
        amount_fen=20000, refunded_fen=0))
    refuses(sa.insert(m.Payment).values(number="P-b", order_id=order.id, channel="wechat",
                                        status="confirmed", amount_fen=20000, refunded_fen=0))


def test_approved_unit_needs_a_unit_number(world):
    registration = world.registration("徐汇贸易")
    refuses(sa.update(m.UnitRegistration).where(m.UnitRegistration.id == registration.id)
            .values(status="approved"))


def test_same_id_document_only_once_per_edition(world):
    wang = world.person("王伟")
    other_unit_reg = world.registration("徐汇贸易")
    person = m.Person(unit_id=other_unit_reg.unit_id, name="Copy", gender=m.Gender.male,
                      id_type=m.IdType.mainland_id, id_number=wang.person.id_number)
    db.session.add(person)
    db.session.flush()
    refuses(sa.insert(m.PersonRegistration).values(
        edition_id=wang.edition_id, person_id=person.id,
        unit_registration_id=other_unit_reg.id, id_key=wang.id_key, status="draft",
        entry_days=0, is_reuse=False))


def test_status_values_are_checked(world):
    wang = world.person("王伟")
    refuses(sa.text("UPDATE person_registration SET status = 'paid_maybe' WHERE id = :id"),
            {"id": wang.id})


def test_tagged_statuses_need_a_tag(world):
    draft = world.person("刘洋")
    refuses(sa.update(m.PersonRegistration).where(m.PersonRegistration.id == draft.id)
            .values(status="awaiting_payment", tag=None))


def test_event_capacity_holds(world):
    event = db.session.scalars(sa.select(m.Event)).first()
    refuses(sa.update(m.Event).where(m.Event.id == event.id)
            .values(seats_taken=event.capacity + 1))


def test_at_most_ten_badges_per_parcel(world):
    wang = world.person("王伟")
    address = db.session.scalars(sa.select(m.Address)).first()
    shipment = m.Shipment(unit_id=address.unit_id, address_id=address.id)
    db.session.add(shipment)
    db.session.flush()
    refuses(sa.insert(m.Badge).values(
        number="B-1", person_id=wang.person_id, edition_id=wang.edition_id, tag="visitor",
        status="produced", active=True, token_nonce="n1", printed_name="x", printed_unit="y",
        shipment_id=shipment.id, parcel_slot=11))
