"""Person transitions: fill in, submit, join approval, cancellation."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Iterable

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.exc import IntegrityError

from app import models as m
from app.clock import now
from app.extensions import db
from app.security import WRITE, Actor, get_scoped
from app.validation import ValidationFailed, normalise_id_number, normalise_mobile
from app.workflow.audit import record
from app.workflow.editions import current_edition, require_delegation_window
from app.workflow.errors import BatchResult, WorkflowError
from app.workflow.transitions import move

PS = m.PersonStatus
EDITABLE = (PS.draft,)
# A unit may withdraw a person at any point before the badge is issued.
CANCELLABLE = (PS.draft, PS.awaiting_unit, PS.submitted, PS.awaiting_lock, PS.awaiting_payment,
               PS.awaiting_review, PS.approved)


@dataclass
class PersonData:
    name: str
    gender: m.Gender
    id_type: m.IdType
    id_number: str
    nationality: str
    mobile: str | None
    email: str | None
    job_title: str | None
    entry_dates: list[date]


def id_key(id_type: m.IdType, id_number: str) -> str:
    return f"{m.IdType(id_type).value}:{id_number}"


def person_label():
    return sa.select(m.Person.name).where(
        m.Person.id == m.PersonRegistration.person_id).scalar_subquery()


def unit_registration_for(actor: Actor, edition: m.Edition) -> m.UnitRegistration:
    if actor.unit_id is None:
        raise WorkflowError(_l("Only a unit account can do this."), 403)
    registration = db.session.scalars(sa.select(m.UnitRegistration).where(
        m.UnitRegistration.edition_id == edition.id,
        m.UnitRegistration.unit_id == actor.unit_id,
    )).one_or_none()
    if registration is None:
        raise WorkflowError(_l("Your unit has not registered for this edition yet."), 409)
    return registration


def _clean(data: PersonData, edition: m.Edition) -> PersonData:
    try:
        number = normalise_id_number(data.id_type, data.id_number)
        mobile = normalise_mobile(data.mobile) if data.mobile else None
    except ValidationFailed as exc:
        raise WorkflowError(exc.message, 400) from None
    outside = [d for d in data.entry_dates if d not in edition.days]
    if outside:
        raise WorkflowError(_l("Entry dates must be exhibition days (%(first)s to %(last)s).",
                               first=edition.start_date.isoformat(),
                               last=edition.end_date.isoformat()), 400)
    return PersonData(data.name.strip(), m.Gender(data.gender), m.IdType(data.id_type), number,
                      (data.nationality or "CN").upper(), mobile,
                      (data.email or "").strip() or None, (data.job_title or "").strip() or None,
                      sorted(set(data.entry_dates)))


def write_person_data(registration: m.PersonRegistration, person: m.Person, data: PersonData,
                      edition: m.Edition) -> None:
    """Put cleaned data on the person and its registration and flush: the database refuses an
    ID document entered twice in one edition (or twice in one unit)."""
    person.name = data.name
    person.gender = data.gender
    person.id_type = data.id_type
    person.id_number = data.id_number
    person.nationality = data.nationality
    person.mobile = data.mobile
    person.email = data.email
    person.job_title = data.job_title
    registration.id_key = id_key(data.id_type, data.id_number)
    registration.entry_days = edition.days_to_mask(data.entry_dates)
    try:
        db.session.add(registration)
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise WorkflowError(_l("A person with this ID document is already registered for "
                               "this edition."), 409) from None


def save_person(actor: Actor, data: PersonData,
                registration_id: int | None = None) -> m.PersonRegistration:
    """Create a draft person of the actor's unit, or change one that is still a draft."""
    edition = current_edition()
    unit_registration = unit_registration_for(actor, edition)
    if unit_registration.status is m.UnitStatus.rejected:
        raise WorkflowError(_l("Your unit's registration was rejected; persons cannot be "
                               "added."))
    require_delegation_window(edition, unit_registration.delegation_id)
    data = _clean(data, edition)
    if registration_id is None:
        person = m.Person(unit_id=actor.unit_id)
        registration = m.PersonRegistration(edition_id=edition.id, person=person,
                                            unit_registration_id=unit_registration.id,
                                            status=PS.draft)
        before = None
    else:
        registration = get_scoped(m.PersonRegistration, registration_id, actor, WRITE)
        if registration is None:
            raise WorkflowError(_l("No such person."), 404)
        if registration.status not in EDITABLE:
            raise WorkflowError(_l("Only a draft person can be changed."))
        person = registration.person
        before = {"name": person.name, "id_number": person.id_number}
    write_person_data(registration, person, data, edition)
    record(actor, "person_registration", registration.id,
           "create" if before is None else "update",
           to_state=registration.status if before is None else None,
           detail=None if before is None else {"before": before})
    db.session.commit()
    return registration


def submit_persons(actor: Actor, ids: Iterable[int] | sa.Select) -> BatchResult:
    """A unit submits draft persons (each needs at least one entry date)."""
    edition = current_edition()
    unit_registration = unit_registration_for(actor, edition)
    require_delegation_window(edition, unit_registration.delegation_id)
    PR = m.PersonRegistration
    return move(actor, PR, ids, action="submit", from_states=[PS.draft], to_state=PS.submitted,
                label=person_label(),
                checks=[(PR.entry_days > 0, _l("choose at least one entry date"))],
                values={"submitted_at": now(), "status_changed_at": now()})


def decide_joins(actor: Actor, ids: Iterable[int] | sa.Select, accept: bool,
                 reason: str | None = None) -> BatchResult:
    """A unit accepts (→ submitted) or refuses (→ cancelled) persons who joined from the app."""
    if actor.unit_id is None:
        raise WorkflowError(_l("Only a unit account can do this."), 403)
    return move(actor, m.PersonRegistration, ids,
                action="accept_join" if accept else "refuse_join",
                from_states=[PS.awaiting_unit],
                to_state=PS.submitted if accept else PS.cancelled, label=person_label(),
                reason=reason, values={"status_changed_at": now(),
                                       **({"submitted_at": now()} if accept else {})})


def delete_draft(actor: Actor, registration_id: int) -> None:
    registration = get_scoped(m.PersonRegistration, registration_id, actor, WRITE)
    if registration is None:
        raise WorkflowError(_l("No such person."), 404)
    if registration.status is not PS.draft:
        raise WorkflowError(_l("Only a draft person can be deleted; cancel it instead."))
    person = registration.person
    db.session.delete(registration)
    db.session.flush()
    others = db.session.scalar(sa.select(sa.func.count()).select_from(m.PersonRegistration)
                               .where(m.PersonRegistration.person_id == person.id))
    if not others and person.user_id is None:
        db.session.delete(person)
    record(actor, "person_registration", registration_id, "delete", from_state=PS.draft)
    db.session.commit()

