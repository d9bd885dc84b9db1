"""Supporting events: publish and close (organiser), accept and decline applications."""
from __future__ import annotations

from typing import Iterable

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l

from app import models as m
from app.extensions import db
from app.security import Actor
from app.workflow.errors import BatchResult, WorkflowError
from app.workflow.transitions import move

ES = m.EventStatus
AS = m.ApplicationStatus


def event_label():
    return m.Event.title_zh


def application_label():
    return sa.select(m.Person.name).join(
        m.PersonRegistration, m.PersonRegistration.person_id == m.Person.id
    ).where(m.PersonRegistration.id == m.EventApplication.person_registration_id
            ).scalar_subquery()


def check_event(event: m.Event) -> None:
    if event.starts_at and event.ends_at and event.ends_at <= event.starts_at:
        raise WorkflowError(_l("The event must end after it starts."), 400)
    if event.capacity is None or event.capacity <= 0:
        raise WorkflowError(_l("The capacity must be at least 1."), 400)
    if event.capacity < (event.seats_taken or 0):
        raise WorkflowError(_l("The capacity cannot be below the %(count)d seats already "
                               "taken.", count=event.seats_taken), 400)


def publish_events(actor: Actor, ids: Iterable[int] | sa.Select) -> BatchResult:
    return move(actor, m.Event, ids, action="publish", from_states=[ES.draft],
                to_state=ES.published, label=event_label())


def close_events(actor: Actor, ids: Iterable[int] | sa.Select) -> BatchResult:
    return move(actor, m.Event, ids, action="close", from_states=[ES.draft, ES.published],
                to_state=ES.closed, label=event_label())


def decide_applications(actor: Actor, ids: Iterable[int] | sa.Select, accept: bool,
                        reason: str | None = None) -> BatchResult:
    """Accept or decline applied applications; a declined one frees its seat."""
    EA = m.EventApplication
    result = move(actor, EA, ids, action="accept" if accept else "decline",
                  from_states=[AS.applied], to_state=AS.accepted if accept else AS.declined,
                  label=application_label(), reason=reason,
                  values={} if accept else {"decision_reason": reason}, commit=False)
    if not accept and result.done:
        freed = (sa.select(sa.func.count()).select_from(EA)
                 .where(EA.event_id == m.Event.id, EA.id.in_(result.done)).scalar_subquery())
        db.session.execute(sa.update(m.Event)
                           .where(m.Event.id.in_(sa.select(EA.event_id)
                                                 .where(EA.id.in_(result.done))))
                           .values(seats_taken=m.Event.seats_taken - freed)
                           .execution_options(synchronize_session=False))
    db.session.commit()
    return result


