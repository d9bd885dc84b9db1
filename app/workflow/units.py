"""Unit registration transitions: submit (unit); approve, return, reject (delegation)."""
from __future__ import annotations

from typing import Iterable

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l

from app import models as m
from app.clock import now
from app.extensions import db
from app.security import Actor
from app.workflow.audit import record_many
from app.workflow.editions import current_edition, require_delegation_window
from app.workflow.errors import BatchResult, WorkflowError
from app.workflow.notices import create_notices, enqueue_sends, unit_decision_notices
from app.workflow.numbers import reserve
from app.workflow.transitions import as_id_select, guarded_update, move, select_movable

US = m.UnitStatus
PS = m.PersonStatus
UR = m.UnitRegistration

# Person statuses that count as "submitted before or with the unit".
SUBMITTED_PERSON_STATUSES = tuple(s for s in PS if s not in (PS.draft, PS.awaiting_unit,
                                                             PS.cancelled))


def unit_label():
    return sa.select(m.Unit.name).where(m.Unit.id == UR.unit_id).scalar_subquery()


def require_review_window(actor: Actor) -> m.Edition:
    """Delegation users act only until their (possibly extended) deadline."""
    edition = current_edition()
    if actor.is_delegation:
        require_delegation_window(edition, (actor.top_delegation_ids
                                            or _parent_of(actor.sub_delegation_ids))[0])
    return edition


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
    id_select = as_id_select(UR, ids)
    from_states = (US.submitted,)
    result, movable = select_movable(actor, UR, id_select, from_states, unit_label())
    if movable:
        ordered = sorted(movable)
        numbers = reserve(f"unit_number:{edition.id}", len(ordered))
        assigned = {rid: f"T{edition.number:02d}{n:06d}"
                    for rid, n in zip(ordered, numbers, strict=True)}
        updated = db.session.scalars(
            guarded_update(actor, UR, id_select, from_states)
            .where(UR.id.in_(ordered))
            .values(status=US.approved, unit_number=sa.case(assigned, value=UR.id),
                    reviewed_at=now(), review_reason=None)
            .returning(UR.id)
        ).all()
        done = [(rid, movable[rid].status) for rid in updated]
        record_many(actor, "unit_registration", done, "approve", US.approved)
        result.done = [rid for rid, _status in done]
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
    result = move(actor, UR, ids, action="return", from_states=[US.submitted],
                  to_state=US.returned, label=unit_label(), reason=reason,
                  values={"reviewed_at": now(), "review_reason": reason}, commit=False)
    return _notify_and_commit(result, US.returned)


def reject_units(actor: Actor, ids: Iterable[int] | sa.Select, reason: str | None) -> BatchResult:
    """Reject submitted units, with a reason the unit sees."""
    reason = _require_reason(reason)
    require_review_window(actor)
    result = move(actor, UR, ids, action="reject", from_states=[US.submitted],
                  to_state=US.rejected, label=unit_label(), reason=reason,
                  values={"reviewed_at": now(), "review_reason": reason}, commit=False)
    return _notify_and_commit(result, US.rejected)


def submitted_person_count(registration_id: int) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(m.PersonRegistration).where(
        m.PersonRegistration.unit_registration_id == registration_id,
        m.PersonRegistration.status.in_(SUBMITTED_PERSON_STATUSES),
    ))
