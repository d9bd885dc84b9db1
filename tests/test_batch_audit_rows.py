"""A batch writes one audit row per record, whatever its size: who, when, from which state to
which, and why, for each of thousands of persons, in one statement (the rows travel to
PostgreSQL as arrays, not as a row of parameters per record)."""
from __future__ import annotations

import sqlalchemy as sa

from app import models as m
from app.extensions import db
from tests.test_tag_and_lock import approve, persons_of

PS = m.PersonStatus
A = m.AuditEvent


def audit_rows(action: str) -> list[A]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(A).where(
        A.record_type == "person_registration", A.action == action).order_by(A.record_id)))


def test_a_lock_of_3000_persons_audits_each_with_who_when_from_to_and_why(app, login, world):
    approve(login, world, "徐汇贸易")
    ids = persons_of(world, "徐汇贸易", 3000, "L")
    client = login("sh-delegation")
    delegation = db.session.scalars(sa.select(m.User).where(
        m.User.username == "sh-delegation")).one()
    assert client.action("/delegation/persons", "tag_visitor", ids).status_code == 302
    assert client.action("/delegation/persons", "lock_persons", ids).status_code == 302

    db.session.expire_all()
    moved = db.session.scalars(sa.select(m.PersonRegistration.status).where(
        m.PersonRegistration.id.in_(ids))).all()
    assert set(moved) == {PS.awaiting_payment} and len(moved) == 3000
    for action, from_state, to_state, reason in (
            ("tag", "submitted", "submitted", "visitor"),
            ("lock", "submitted", "awaiting_payment", None)):
        rows = audit_rows(action)
        assert [r.record_id for r in rows] == ids, action
        assert {(r.from_state, r.to_state, r.reason) for r in rows} == {
            (from_state, to_state, reason)}, action
        assert {(r.actor_id, r.actor_name) for r in rows} == {
            (delegation.id, delegation.username)}, action
        # One moment for the batch, timezone-aware; no detail.
        [at] = {r.at for r in rows}
        assert at.utcoffset() is not None and {r.detail for r in rows} == {None}, action
