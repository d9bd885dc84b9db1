"""Many persons at once for the tests at scale: Core INSERTs through the models' tables, so the
numbers are sealed and keyed (app.pii, app.search_keys) and the name tokens set as every
write path does, in one executemany per table (the planner then sees the table's size)."""
from __future__ import annotations

from typing import Iterable

import sqlalchemy as sa

from app import clock
from app import models as m
from app.extensions import db
from app.search_keys import name_tokens, person_keys
from app.workflow.persons import id_key


def add_persons(registration: m.UnitRegistration, people: Iterable[tuple[str, str, str | None]],
                *, id_type: m.IdType = m.IdType.passport, gender: str = "male",
                nationality: str = "GB", status: str = "submitted") -> list[int]:
    """Persons (name, ID number, mobile) of the unit registration, registered for its
    edition; returns the registrations' ids. Commits."""
    people = list(people)
    stamp = clock.now()
    persons = m.Person.__table__
    person_ids = db.session.execute(
        persons.insert().returning(persons.c.id, sort_by_parameter_order=True),
        [{"unit_id": registration.unit_id, "name": name, "name_search": name_tokens(name),
          "gender": gender, "id_type": id_type.value, "id_number": number,
          "nationality": nationality, "mobile": mobile, **person_keys(number, mobile),
          "created_at": stamp, "updated_at": stamp}
         for name, number, mobile in people]).scalars().all()
    registrations = m.PersonRegistration.__table__
    ids = db.session.execute(
        registrations.insert().returning(registrations.c.id, sort_by_parameter_order=True),
        [{"edition_id": registration.edition_id, "person_id": person_id,
          "unit_registration_id": registration.id, "delegation_id": registration.delegation_id,
          "sub_delegation_id": registration.sub_delegation_id,
          "id_key": id_key(id_type, number), "status": status, "entry_days": 1,
          "is_reuse": False, "created_at": stamp, "updated_at": stamp}
         for person_id, (_name, number, _mobile) in zip(person_ids, people, strict=True)]
    ).scalars().all()
    db.session.commit()
    return ids


def analyze(*tables: str, vacuum: bool = False) -> None:
    """What autovacuum does after a bulk load (VACUUM also moves GIN's pending entries into
    the index)."""
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in tables:
            conn.execute(sa.text(f"{'VACUUM ' if vacuum else ''}ANALYZE {table}"))
