"""Unit registration transitions: submit (unit); approve, return, reject (delegation)."""
from __future__ import annotations

from typing import Iterable

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l

from app import models as m
from app.clock import now
from app.extensions import db
from app.scoping.actor import Actor
from app.workflow.editions import current_edition, require_delegation_window
from app.workflow.errors import BatchResult, WorkflowError
from app.workflow.notices import create_notices, enqueue_sends, unit_decision_notices
from app.workflow.numbers import reserve
from app.workflow.transitions import Move, move, table

US = m.UnitStatus
PS = m.PersonStatus
UR = m.UnitRegistration

# The unit registration's state machine (docs/design.md, "Unit registration states").
UNIT_MOVES = table({
    "submit": Move(from_={US.draft, US.returned}, to=US.submitted),
    "approve": Move(from_={US.submitted}, to=US.approved),
    "return": Move(from_={US.submitted}, to=US.returned),
    "reject": Move(from_={US.submitted}, to=US.rejected),
})

# Person statuses that count as "submitted before or with the unit".
SUBMITTED_PERSON_STATUSES = tuple(s for s in PS if s not in (PS.draft, PS.awaiting_unit,
                                                             PS.cancelled))


def unit_label():
    return sa.select(m.Unit.name).where(m.Unit.id == UR.unit_id).scalar_subquery()


def require_review_window(actor: Actor) -> m.Edition:
    """Delegation users act only until their (possibly extended) deadline."""
    edition = current_edition()
    if actor.is_delegation:
        require_delegation_window(edition, own_delegation_id(actor))
    return edition


def own_delegation_id(actor: Actor) -> int | None:
    """The trading delegation whose deadline an actor works to: a delegation user's own (a
    sub-delegation's parent), a unit's the one it registered with this edition."""
    if actor.is_delegation:
        return (actor.top_delegation_ids or _parent_of(actor.sub_delegation_ids))[0]
    if actor.unit_id is not None:
        return db.session.scalar(sa.select(m.UnitRegistration.delegation_id).where(
            m.UnitRegistration.edition_id == current_edition().id,
            m.UnitRegistration.unit_id == actor.unit_id))
    return None


def _parent_of(sub_ids: tuple[int, ...]) -> tuple[int, ...]:
    parent = db.session.scalar(sa.select(m.Delegation.parent_id)
                               .where(m.Delegation.id == sub_ids[0]))
    return (parent or sub_ids[0],)


def _require_reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise WorkflowError(_l("Give a reason; the unit will see it."), 400)
    return reason


def approve_units(actor: Actor, ids: Iterable[int] | sa.Select) -> BatchResult:
    """Approve submitted units; each gets its unit number T + edition + sequence."""
    edition = require_review_window(actor)

    def numbered(ordered: list[int]) -> dict:
        # Numbers are reserved for exactly the rows that move, in id order.
        numbers = reserve(f"unit_number:{edition.id}", len(ordered))
        assigned = {rid: f"T{edition.number:02d}{n:06d}"
                    for rid, n in zip(ordered, numbers, strict=True)}
        return {"unit_number": sa.case(assigned, value=UR.id), "reviewed_at": now(),
                "review_reason": None}

    result = move(actor, UR, ids, UNIT_MOVES["approve"], label=unit_label(), values=numbered,
                  commit=False)
    return _notify_and_commit(result, US.approved)


def _notify_and_commit(result: BatchResult, decision: m.UnitStatus) -> BatchResult:
    """Queue the e-mails to the units in the same transaction; send them after the commit."""
    notification_ids = create_notices(unit_decision_notices(result.done, decision)) \
        if result.done else []
    db.session.commit()
    enqueue_sends(notification_ids)
    return result


def return_units(actor: Actor, ids: Iterable[int] | sa.Select, reason: str | None) -> BatchResult:
    """Send submitted units back for changes, with a reason the unit sees."""
    reason = _require_reason(reason)
    require_review_window(actor)
    result = move(actor, UR, ids, UNIT_MOVES["return"], label=unit_label(), reason=reason,
                  values={"reviewed_at": now(), "review_reason": reason}, commit=False)
    return _notify_and_commit(result, US.returned)


def reject_units(actor: Actor, ids: Iterable[int] | sa.Select, reason: str | None) -> BatchResult:
    """Reject submitted units, with a reason the unit sees."""
    reason = _require_reason(reason)
    require_review_window(actor)
    result = move(actor, UR, ids, UNIT_MOVES["reject"], label=unit_label(), reason=reason,
                  values={"reviewed_at": now(), "review_reason": reason}, commit=False)
    return _notify_and_commit(result, US.rejected)
