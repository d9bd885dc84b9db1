"""Security review (人员信息审核): reviewers pass or fail persons awaiting review, one or many.
Failed persons become refundable and their unit is told by SMS and e-mail."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from functools import partial

import sqlalchemy as sa
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from app import models as m
from app.clock import now
from app.extensions import db
from app.scoping.actor import REVIEWER, Actor
from app.workflow.errors import BatchResult, WorkflowError
from app.workflow.notices import Notice, create_notices, enqueue_sends, render
from app.workflow.persons import PERSON_MOVES, person_label
from app.workflow.transitions import move

PR = m.PersonRegistration


def _decide(actor: Actor, ids: Iterable[int] | sa.Select, outcome: m.ReviewOutcome,
            reason: m.ReviewReason | None, note: str | None) -> BatchResult:
    if not (actor.has(REVIEWER) or actor.is_admin):
        raise WorkflowError(_l("Only a security reviewer can do this."), 403)
    result = move(actor, PR, ids, PERSON_MOVES["review_" + outcome.value], label=person_label(),
                  reason=reason.value if reason else None,
                  values={"status_changed_at": now()}, commit=False)
    if result.done:
        db.session.execute(sa.insert(m.ReviewDecision), [
            {"person_registration_id": rid, "reviewer_id": actor.user_id, "outcome": outcome,
             "reason": reason, "note": note, "decided_at": now()} for rid in result.done])
    notification_ids = create_notices(failure_notices(result.done, reason)) \
        if result.done and outcome is m.ReviewOutcome.failed else []
    db.session.commit()
    enqueue_sends(notification_ids)
    return result


def pass_persons(actor: Actor, ids: Iterable[int] | sa.Select) -> BatchResult:
    """Passed persons go to badge production."""
    return _decide(actor, ids, m.ReviewOutcome.passed, None, None)


def fail_persons(actor: Actor, ids: Iterable[int] | sa.Select, reason: m.ReviewReason,
                 note: str | None = None) -> BatchResult:
    """Failed persons get no badge; if paid for, their unit may ask for a refund."""
    return _decide(actor, ids, m.ReviewOutcome.failed, m.ReviewReason(reason), note)


def failure_notices(registration_ids: list[int], reason: m.ReviewReason | None
                    ) -> list[Notice]:
    """One SMS and one e-mail per unit naming its failed persons (one query)."""
    UR = m.UnitRegistration
    rows = db.session.execute(
        sa.select(m.Unit.id, m.Unit.name, m.Unit.language, m.Unit.mobile, m.Unit.email,
                  UR.contact_mobile, UR.contact_email, m.Person.name.label("person"))
        .select_from(PR).join(UR, UR.id == PR.unit_registration_id)
        .join(m.Unit, m.Unit.id == UR.unit_id)
        .join(m.Person, m.Person.id == PR.person_id)
        .where(PR.id.in_(registration_ids)).order_by(m.Unit.id, m.Person.name)).all()
    by_unit: dict[int, list] = defaultdict(list)
    for row in rows:
        by_unit[row.id].append(row)
    stamp = min(registration_ids)
    notices = []
    for unit_id, unit_rows in by_unit.items():
        first = unit_rows[0]
        names = [r.person for r in unit_rows]
        subject, body = render(first.language, partial(_failure_text, first.name, names,
                                                       reason))
        key = f"review-failed:{unit_id}:{stamp}:{len(registration_ids)}"
        notices += [
            Notice(f"{key}:email", m.NotificationChannel.email, unit_id,
                   first.contact_email or first.email or "", first.language, subject, body),
            Notice(f"{key}:sms", m.NotificationChannel.sms, unit_id,
                   first.contact_mobile or first.mobile or "", first.language, None, body,
                   "review_failed", {"unit": first.name, "count": str(len(names))})]
    return notices


def _failure_text(unit: str, names: list[str], reason: m.ReviewReason | None
                  ) -> tuple[str, str]:
    return (_("Security review not passed"),
            _("%(unit)s: %(names)s did not pass the security review (%(reason)s) and will get "
              "no badge. If their badge fee was paid, you can ask for a refund.",
              unit=unit, names="、".join(names),
              reason=reason.label if reason else ""))
