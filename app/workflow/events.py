"""Supporting events: publish and close (organiser), apply and withdraw (unit), accept and
decline (organiser). Seats are counted on the event: applied + accepted, never above capacity."""
from __future__ import annotations

from collections import defaultdict
from functools import partial
from typing import Any, Iterable

import sqlalchemy as sa
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy.exc import IntegrityError

from app import models as m
from app.clock import now
from app.extensions import db
from app.formatting import fmt_datetime
from app.scoping.actor import WRITE, Actor
from app.scoping.rules import scoped
from app.workflow.audit import record_many
from app.workflow.editions import current_edition
from app.workflow.errors import BatchResult, WorkflowError
from app.workflow.notices import Notice, create_notices, enqueue_sends, render
from app.workflow.persons import person_label, unit_registration_for
from app.workflow.transitions import Move, move, table, wrong_state

ES = m.EventStatus
AS = m.ApplicationStatus
PS = m.PersonStatus
EA = m.EventApplication
PR = m.PersonRegistration

# Applications that hold a seat (the partial unique index allows one per event and person).
ACTIVE_APPLICATION_STATUSES = (AS.applied, AS.accepted)
# Persons a unit may send to an event: submitted to the delegation and still on their way to a
# badge. Not drafts (never submitted, and the unit may still delete them), not persons awaiting
# the unit's approval (not members of the unit yet), and not rejected, cancelled or refunded
# persons (they get no badge and cannot enter the venue).
APPLICABLE_PERSON_STATUSES = (PS.submitted, PS.awaiting_lock, PS.awaiting_payment, PS.in_order,
                              PS.awaiting_review, PS.approved, PS.badge_issued)

# The event's and the application's state machines (docs/design.md, "States").
EVENT_MOVES = table({
    "publish": Move(from_={ES.draft}, to=ES.published),
    "close": Move(from_={ES.draft, ES.published}, to=ES.closed),
})
APPLICATION_MOVES = table({
    "accept": Move(from_={AS.applied}, to=AS.accepted),
    "decline": Move(from_={AS.applied}, to=AS.declined),
    # Withdrawing gives the seat back: only an application holding one can be withdrawn.
    "withdraw": Move(from_=set(ACTIVE_APPLICATION_STATUSES), to=AS.withdrawn),
})


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
    return move(actor, m.Event, ids, EVENT_MOVES["publish"], label=event_label())


def close_events(actor: Actor, ids: Iterable[int] | sa.Select) -> BatchResult:
    return move(actor, m.Event, ids, EVENT_MOVES["close"], label=event_label())


def _free_seats(application_ids: list[int]) -> None:
    """Give back the seats of applications that just left an active state (each id once)."""
    if not application_ids:
        return
    freed = (sa.select(sa.func.count()).select_from(EA)
             .where(EA.event_id == m.Event.id, EA.id.in_(application_ids)).scalar_subquery())
    db.session.execute(sa.update(m.Event)
                       .where(m.Event.id.in_(sa.select(EA.event_id)
                                             .where(EA.id.in_(application_ids))))
                       .values(seats_taken=m.Event.seats_taken - freed)
                       .execution_options(synchronize_session=False))


def decide_applications(actor: Actor, ids: Iterable[int] | sa.Select, accept: bool,
                        reason: str | None = None) -> BatchResult:
    """Accept or decline applied applications; a declined one frees its seat."""
    if actor.organiser_id is None and not actor.is_admin:
        raise WorkflowError(_l("Only an event organiser can do this."), 403)
    result = move(actor, EA, ids, APPLICATION_MOVES["accept" if accept else "decline"],
                  label=application_label(), reason=reason,
                  values={} if accept else {"decision_reason": reason}, commit=False)
    if not accept:
        _free_seats(result.done)
    notification_ids = create_notices(decision_notices(result.done, accept, reason)) \
        if result.done else []
    db.session.commit()
    enqueue_sends(notification_ids)
    return result


def decision_notices(application_ids: list[int], accept: bool, reason: str | None
                     ) -> list[Notice]:
    """One e-mail per unit and event naming the persons accepted or declined (one query)."""
    UR = m.UnitRegistration
    rows = db.session.execute(
        sa.select(m.Unit.id, m.Unit.name, m.Unit.language, m.Unit.email, UR.contact_email,
                  m.Event.id.label("event_id"), m.Event.title_zh, m.Event.title_en,
                  m.Event.starts_at, m.Event.place, m.Person.name.label("person"))
        .select_from(EA).join(m.Event, m.Event.id == EA.event_id)
        .join(PR, PR.id == EA.person_registration_id)
        .join(UR, UR.id == PR.unit_registration_id)
        .join(m.Unit, m.Unit.id == EA.unit_id)
        .join(m.Person, m.Person.id == PR.person_id)
        .where(EA.id.in_(application_ids)).order_by(m.Unit.id, m.Event.id, m.Person.name)).all()
    groups: dict[tuple[int, int], list] = defaultdict(list)
    for row in rows:
        groups[(row.id, row.event_id)].append(row)
    stamp = f"{min(application_ids)}:{len(application_ids)}"
    notices = []
    for (unit_id, event_id), group in groups.items():
        first = group[0]
        subject, body = render(first.language, partial(
            _decision_text, first, [r.person for r in group], accept, reason))
        notices.append(Notice(
            f"event-{'accepted' if accept else 'declined'}:{unit_id}:{event_id}:{stamp}:email",
            m.NotificationChannel.email, unit_id, first.contact_email or first.email or "",
            first.language, subject, body))
    return notices


def _decision_text(row: Any, names: list[str], accept: bool, reason: str | None
                   ) -> tuple[str, str]:
    args = {"unit": row.name, "names": "、".join(names),
            "event": row.title_en if row.language == "en" else row.title_zh,
            "starts": fmt_datetime(row.starts_at), "place": row.place}
    if accept:
        return (_("Event application accepted"),
                _("%(unit)s: %(names)s may attend %(event)s on %(starts)s at %(place)s.",
                  **args))
    return (_("Event application declined"),
            _("%(unit)s: the organiser declined %(names)s for %(event)s: %(reason)s",
              reason=reason or "", **args))


def withdraw_applications(actor: Actor, ids: Iterable[int] | sa.Select) -> BatchResult:
    """A unit withdraws applied or accepted applications; their seats are freed."""
    if actor.unit_id is None:
        raise WorkflowError(_l("Only a unit account can do this."), 403)
    result = move(actor, EA, ids, APPLICATION_MOVES["withdraw"], label=application_label(),
                  commit=False)
    _free_seats(result.done)
    db.session.commit()
    return result


def event_refusal(event: m.Event) -> Any:
    """Why the event takes no applications now, or None when it does."""
    if event.status is ES.draft:
        return _l("The event is not published yet.")
    if event.status is ES.closed:
        return _l("The event is closed and takes no more applications.")
    if not event.open_to_visitors:
        return _l("The event is not open to professional visitors.")
    if event.edition_id != current_edition().id:
        return _l("The event belongs to another edition.")
    if now() >= event.starts_at:
        return _l("The event has already started.")
    return None


def applicable_persons(actor: Actor, event: m.Event) -> list[sa.Row]:
    """The actor's persons who may attend `event`, with the status of their active application
    to it (None if they have none): one query."""
    active = (sa.select(EA.person_registration_id, EA.status)
              .where(EA.event_id == event.id, EA.status.in_(ACTIVE_APPLICATION_STATUSES))
              .subquery())
    stmt = (sa.select(PR.id, m.Person.name, PR.status, active.c.status.label("applied"))
            .join(m.Person, m.Person.id == PR.person_id)
            .outerjoin(active, active.c.person_registration_id == PR.id)
            .where(PR.edition_id == event.edition_id,
                   PR.status.in_(APPLICABLE_PERSON_STATUSES))
            .order_by(m.Person.name, PR.id))
    return list(db.session.execute(scoped(stmt, PR, actor, WRITE)))


def apply_to_event(actor: Actor, event_id: int, person_registration_ids: Iterable[int]
                   ) -> BatchResult:
    """A unit applies for some of its persons to attend an event.

    Persons outside the unit refuse the whole request (404). Persons who may not attend or
    already hold an active application are reported and skipped. The seats of the others are
    reserved by one guarded UPDATE, so concurrent requests never exceed the capacity: a request
    that does not fit is refused whole, nothing changed.
    """
    if actor.unit_id is None:
        raise WorkflowError(_l("Only a unit account can do this."), 403)
    ids = sorted(set(person_registration_ids))
    if not ids:
        raise WorkflowError(_l("Choose at least one person."), 400)
    event = db.session.get(m.Event, event_id)
    if event is None:
        raise WorkflowError(_l("No such event."), 404)
    refusal = event_refusal(event)
    if refusal is not None:
        raise WorkflowError(refusal)
    rows = db.session.execute(scoped(
        sa.select(PR.id, PR.status, PR.edition_id, person_label().label("label"))
        .where(PR.id.in_(ids)), PR, actor, WRITE)).all()
    if len(rows) != len(ids):
        # A tampered or another unit's id: refuse the whole request, change nothing.
        raise WorkflowError(_l("No such person."), 404)
    if unit_registration_for(actor, current_edition()).status is m.UnitStatus.rejected:
        raise WorkflowError(_l("Your unit's registration was rejected; it cannot apply for "
                               "events."))
    already = set(db.session.scalars(sa.select(EA.person_registration_id).where(
        EA.event_id == event.id, EA.person_registration_id.in_(ids),
        EA.status.in_(ACTIVE_APPLICATION_STATUSES))))
    result = BatchResult()
    chosen = []
    for row in rows:
        if row.edition_id != event.edition_id:
            result.refuse(row.id, row.label, _l("not registered for this edition"))
        elif row.status not in APPLICABLE_PERSON_STATUSES:
            result.refuse(row.id, row.label, wrong_state(row.status))
        elif row.id in already:
            result.refuse(row.id, row.label, _l("already applied for this event"))
        else:
            chosen.append(row.id)
    if not chosen:
        return result
    _reserve_seats(event.id, len(chosen))
    try:
        created = db.session.execute(
            sa.insert(EA).returning(EA.id),
            [{"event_id": event.id, "unit_id": actor.unit_id, "person_registration_id": rid,
              "status": AS.applied} for rid in chosen],
        ).scalars().all()
    except IntegrityError:
        # Another request applied for one of these persons meanwhile (the partial unique
        # index refused it): the rollback gives the reserved seats back too.
        db.session.rollback()
        raise WorkflowError(_l("Some of these persons were applied for at the same moment; "
                               "reload the page and try again."), 409) from None
    record_many(actor, "event_application", [(aid, None) for aid in created], "apply",
                AS.applied, detail={"event_id": event.id})
    db.session.commit()
    result.done = list(created)
    return result


def _reserve_seats(event_id: int, count: int) -> None:
    """Take `count` seats in one guarded UPDATE. The row lock it takes makes concurrent
    requests wait, and each then re-checks the capacity against the committed count."""
    E = m.Event
    reserved = db.session.scalar(
        sa.update(E).where(E.id == event_id, E.status == ES.published,
                           E.open_to_visitors.is_(True), E.seats_taken + count <= E.capacity)
        .values(seats_taken=E.seats_taken + count).returning(E.id)
        .execution_options(synchronize_session=False))
    if reserved is not None:
        return
    db.session.rollback()
    event = db.session.get(m.Event, event_id)
    refusal = event_refusal(event) if event is not None else None
    if refusal is not None:
        raise WorkflowError(refusal)
    raise WorkflowError(_l("Only %(left)d seat(s) left, but %(count)d person(s) were chosen. "
                           "Nothing was applied for.",
                           left=max(event.seats_left, 0), count=count))
