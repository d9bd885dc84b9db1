"""Human-readable numbers (unit numbers, orders, badges…) from named counters, in bulk."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from app import models as m
from app.extensions import db


def reserve(name: str, count: int) -> range:
    """Reserve `count` consecutive values of counter `name`; the row lock serialises callers."""
    if count <= 0:
        return range(0)
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    db.session.execute(
        dialect.insert(m.Counter).values(name=name, value=0).on_conflict_do_nothing()
    )
    last = db.session.execute(
        sa.update(m.Counter).where(m.Counter.name == name)
        .values(value=m.Counter.value + count).returning(m.Counter.value)
    ).scalar_one()
    return range(last - count + 1, last + 1)
