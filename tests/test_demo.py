"""The demo data: the 5th edition with the deadlines of DESIGN.md, one login per role."""
from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from app import models as m
from app.clock import SHANGHAI
from app.demo import load_demo
from app.extensions import db
from app.scoping.actor import ROLES
from app.validation import normalise_id_number, normalise_uscc


def test_demo_has_the_fifth_edition_with_its_deadlines(world):
    edition = db.session.scalars(sa.select(m.Edition).where(m.Edition.is_current)).one()
    assert (edition.number, edition.start_date, edition.end_date) == (
        5, date(2022, 11, 5), date(2022, 11, 10))
    local = lambda d: d.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")  # noqa: E731
    assert local(edition.delegation_deadline) == "2022-09-30 23:59"
    assert local(edition.transfer_deadline) == "2022-10-12 23:59"
    assert local(edition.online_pay_deadline) == "2022-10-15 23:59"


def test_demo_has_one_login_per_role(world):
    from flask_appbuilder.security.sqla.models import Role

    roles = {role for (role,) in db.session.execute(sa.select(Role.name).join(m.User.roles))}
    assert set(ROLES) <= roles


def test_demo_codes_and_id_numbers_are_valid(world):
    for unit in db.session.scalars(sa.select(m.Unit).where(m.Unit.uscc.is_not(None))):
        assert normalise_uscc(unit.uscc) == unit.uscc
    for person in db.session.scalars(sa.select(m.Person)):
        assert normalise_id_number(person.id_type, person.id_number) == person.id_number


def test_demo_structure(world):
    shanghai = db.session.scalars(sa.select(m.Delegation).where(m.Delegation.code == "SH")).one()
    assert len(shanghai.children) == 2
    industry = db.session.scalars(sa.select(m.Delegation).where(
        m.Delegation.kind == m.DelegationKind.industry)).one()
    assert industry.rollup_delegation_id == shanghai.id
    statuses = set(db.session.scalars(sa.select(m.UnitRegistration.status)))
    assert {m.UnitStatus.draft, m.UnitStatus.submitted, m.UnitStatus.approved,
            m.UnitStatus.returned} <= statuses


def test_loading_the_demo_twice_changes_nothing(world):
    before = db.session.scalar(sa.select(sa.func.count()).select_from(m.Unit))
    load_demo()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Unit)) == before
