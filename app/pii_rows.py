"""Sealing the stored numbers again (app.pii): the migration that seals the plain numbers of
an existing database (c17c0000000b) and `flask ciie rotate-keys` both walk the sealed
columns here, a batch of rows at a time in id order, and rewrite what is out of date:

- a value sealed with a key other than the current one (PII_KEY_ID) is sealed again with it
  (the migration: every value, as all of them are plain);
- the keyed hashes (person.id_search_key, person.mobile_search_key, person_registration.id_key)
  are computed again from the opened numbers and rewritten where they differ, so a new
  PII_SEARCH_KEY takes effect in the same pass.

It reads and writes the tables through plain string columns (sa.table), never the models'
Sealed type: each value's opening and sealing is explicit."""
from __future__ import annotations

from collections import Counter
from typing import Callable, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from app.pii import ID_NUMBER, MOBILE, key_id_of, ring
from app.search_keys import document_key, person_keys

# table: {column: what it holds}. Every Sealed column of app.models is here (a test checks).
SEALED: dict[str, dict[str, str]] = {
    "person": {"id_number": ID_NUMBER, "mobile": MOBILE},
    "unit": {"mobile": MOBILE},
    "unit_registration": {"contact_mobile": MOBILE},
    "account_claim": {"mobile": MOBILE},
}
BATCH = 2000


def _table(name: str, *columns: str) -> sa.TableClause:
    return sa.table(name, sa.column("id", sa.Integer), *(sa.column(c, sa.String) for c in columns))


def _batches(connection: Connection, table: sa.TableClause, columns: list[str],
             batch: int) -> Iterator[list]:
    last = 0
    while True:
        rows = connection.execute(
            sa.select(table.c.id, *(table.c[c] for c in columns))
            .where(table.c.id > last).order_by(table.c.id).limit(batch)).all()
        if not rows:
            return
        yield rows
        last = rows[-1].id


def _update(connection: Connection, table: sa.TableClause, changes: list[dict]) -> None:
    if changes:
        columns = [c for c in changes[0] if c != "row_id"]
        connection.execute(
            sa.update(table).where(table.c.id == sa.bindparam("row_id"))
            .values({c: sa.bindparam(c) for c in columns}), changes)


def reseal(connection: Connection, *, plain: bool = False, batch: int = BATCH,
           commit: Callable[[], None] | None = None) -> Counter:
    """Rewrite every stored number not sealed with the app's current key and every keyed
    hash out of date; `plain`: the stored numbers are not sealed yet (the migration).
    `commit` runs after each batch (rotate-keys commits as it goes, so a stop loses nothing
    done and a rerun carries on). Returns how many values of each kind were rewritten."""
    counts: Counter = Counter()
    keys = ring()

    def opened(stored: str | None, kind: str) -> str | None:
        if stored is None:
            return None
        return stored if plain else keys.open(stored, kind)

    def resealed(stored: str | None, value: str | None, kind: str) -> str | None:
        if value is None:
            return None
        return keys.seal(value, kind) if plain or key_id_of(stored) != keys.current else stored

    for name, kinds in SEALED.items():
        extra = ["id_search_key", "mobile_search_key"] if name == "person" else []
        table = _table(name, *kinds, *extra)
        for rows in _batches(connection, table, [*kinds, *extra], batch):
            changes = []
            for row in rows:
                change = {}
                values = {}
                for column, kind in kinds.items():
                    stored = row._mapping[column]
                    values[column] = opened(stored, kind)
                    new = resealed(stored, values[column], kind)
                    if new != stored:
                        change[column] = new
                        counts[f"{name}.{column}"] += 1
                if name == "person":
                    for column, key in person_keys(values["id_number"],
                                                   values["mobile"]).items():
                        if key != row._mapping[column]:
                            change[column] = key
                            counts[f"person.{column}"] += 1
                if change:
                    changes.append({"row_id": row.id, **{c: change.get(c, row._mapping[c])
                                                         for c in [*kinds, *extra]}})
            _update(connection, table, changes)
            if commit:
                commit()
    _registration_keys(connection, batch, counts, commit)
    return counts


def _registration_keys(connection: Connection, batch: int,
                       counts: Counter, commit: Callable[[], None] | None) -> None:
    registrations = sa.table("person_registration", sa.column("id", sa.Integer),
                             sa.column("id_key", sa.String), sa.column("person_id", sa.Integer))
    people = _table("person", "id_type", "id_number")
    last = 0
    while True:
        # The person's number as stored now: sealed, by the pass over person above.
        rows = connection.execute(
            sa.select(registrations.c.id, registrations.c.id_key, people.c.id_type,
                      people.c.id_number)
            .join(people, people.c.id == registrations.c.person_id)
            .where(registrations.c.id > last).order_by(registrations.c.id).limit(batch)).all()
        if not rows:
            return
        last = rows[-1].id
        changes = []
        for row in rows:
            key = document_key(row.id_type, ring().open(row.id_number, ID_NUMBER))
            if key != row.id_key:
                changes.append({"row_id": row.id, "id_key": key})
        counts["person_registration.id_key"] += len(changes)
        _update(connection, registrations, changes)
        if commit:
            commit()
