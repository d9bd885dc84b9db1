"""The audit trail: who did what to which record, when, from which state to which, and why."""
from __future__ import annotations

from typing import Any, Iterable

import sqlalchemy as sa

from app import models as m
from app.clock import now
from app.extensions import db
from app.input_checks import check_lengths
from app.scoping.actor import Actor


def _state(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


def record(actor: Actor, record_type: str, record_id: int, action: str,
           from_state: Any = None, to_state: Any = None, reason: str | None = None,
           detail: dict | None = None) -> None:
    """Add one audit row to the session (the caller's transaction commits it)."""
    db.session.add(m.AuditEvent(
        at=now(), actor_id=actor.user_id, actor_name=actor.name, record_type=record_type,
        record_id=record_id, action=action, from_state=_state(from_state),
        to_state=_state(to_state), reason=reason, detail=detail,
    ))


def record_many(actor: Actor, record_type: str, rows: Iterable[tuple[int, Any]], action: str,
                to_state: Any = None, reason: str | None = None,
                detail: dict | None = None) -> int:
    """One audit row per record, written in a single INSERT (rows: (record_id, from_state))."""
    # A bulk INSERT passes no flush: a reason longer than its column is refused here.
    check_lengths(m.AuditEvent, {"reason": reason})
    at = now()
    values = [
        {"at": at, "actor_id": actor.user_id, "actor_name": actor.name,
         "record_type": record_type, "record_id": rid, "action": action,
         "from_state": _state(from_state), "to_state": _state(to_state), "reason": reason,
         "detail": detail}
        for rid, from_state in rows
    ]
    if values:
        db.session.execute(sa.insert(m.AuditEvent), values)
    return len(values)
