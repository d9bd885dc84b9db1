"""The app person's own record: sign up, join a unit with its number, read and change it."""
from __future__ import annotations

import sqlalchemy as sa
from flask import current_app
from flask_babel import lazy_gettext as _l

from app import models as m
from app import storage
from app.clock import now
from app.extensions import db
from app.formatting import mask_id_number
from app.scoping.actor import PERSON, READ, WRITE, Actor, actor_for_user
from app.scoping.rules import scoped
from app.validation import ValidationFailed, check_password, normalise_username
from app.workflow.audit import record
from app.workflow.editions import current_edition, require_delegation_window
from app.workflow.errors import WorkflowError
from app.workflow.persons import PersonData, _clean, store_photo, write_person_data

PS = m.PersonStatus
# What the person typed can change until its unit has decided on it.
EDITABLE = (PS.awaiting_unit,)


def sign_up(username: str, password: str, first_name: str, last_name: str) -> m.User:
    """Create an app account (role person) that can then log in for a token."""
    sm = current_app.appbuilder.sm
    try:
        username = normalise_username(username)
        check_password(password, username)
    except ValidationFailed as exc:
        raise WorkflowError(exc.message, 400) from None
    first_name, last_name = first_name.strip(), last_name.strip()
    if not first_name or not last_name:
        raise WorkflowError(_l("Enter your first and last name."), 400)
    role = sm.find_role(PERSON)
    if role is None:
        raise WorkflowError(_l("The service is not ready yet."), 503)
    # FAB's user needs a unique e-mail: a mobile login gets one under the reserved .invalid
    # domain (RFC 2606), to which nothing can ever be sent.
    email = username if "@" in username else f"{username.lstrip('+')}@mobile.invalid"
    if sm.find_user(username=username) or sm.find_user(email=email):
        raise WorkflowError(_l("This login is already taken."), 409)
    user = sm.add_user(username=username, first_name=first_name, last_name=last_name,
                       email=email, role=role, password=password, commit=False)
    if not user:
        # add_user rolled back: a concurrent sign-up took the login first.
        raise WorkflowError(_l("This login is already taken."), 409)
    record(actor_for_user(user), "user", user.id, "signup")
    db.session.commit()
    return user


def own_registration(actor: Actor, mode: str = READ,
                     lock: bool = False) -> m.PersonRegistration:
    """The actor's own person's registration in the current edition (404 if it has not joined
    a unit)."""
    PR = m.PersonRegistration
    stmt = scoped(
        sa.select(PR).join(m.Person, PR.person_id == m.Person.id)
        .where(m.Person.user_id == actor.user_id, PR.edition_id == current_edition().id),
        PR, actor, mode,
    )
    if lock:
        # Held until the commit: the unit cannot accept the person halfway through a change.
        stmt = stmt.with_for_update(of=PR)
    registration = db.session.scalars(stmt).one_or_none()
    if registration is None:
        raise WorkflowError(_l("You have not joined a unit yet."), 404)
    return registration


def _clean_own(data: PersonData, edition: m.Edition) -> PersonData:
    data = _clean(data, edition)
    if not data.name:
        raise WorkflowError(_l("Enter your name."), 400)
    # The unit's acceptance submits the person, and a submitted person needs an entry date.
    if not data.entry_dates:
        raise WorkflowError(_l("Choose at least one entry date."), 400)
    return data


def join_unit(actor: Actor, unit_number: str, data: PersonData) -> m.PersonRegistration:
    """An app user joins the unit whose approved registration has this number; the person
    then awaits the unit's decision."""
    if not actor.has(PERSON) or actor.user_id is None:
        raise WorkflowError(_l("Only an app account can join a unit."), 403)
    edition = current_edition()
    if db.session.scalar(scoped(sa.select(m.Person.id), m.Person, actor, READ)
                         .where(m.Person.user_id == actor.user_id).limit(1)) is not None:
        raise WorkflowError(_l("You have already joined a unit."), 409)
    number = unit_number.strip().upper()
    # Not scoped: the person cannot see any unit yet. The number the unit handed out is what
    # lets it ask to join, and the unit still decides.
    unit_registration = db.session.scalars(
        sa.select(m.UnitRegistration).where(m.UnitRegistration.unit_number == number)
    ).one_or_none()
    if unit_registration is None:
        raise WorkflowError(_l("No unit has the number %(number)s. Check the number with "
                               "your unit.", number=number), 404)
    if (unit_registration.edition_id != edition.id
            or unit_registration.status is not m.UnitStatus.approved):
        raise WorkflowError(_l("The unit with the number %(number)s is not approved for "
                               "this edition, so nobody can join it yet.", number=number), 409)
    require_delegation_window(edition, unit_registration.delegation_id)
    data = _clean_own(data, edition)
    person = m.Person(unit_id=unit_registration.unit_id, user_id=actor.user_id)
    registration = m.PersonRegistration(
        edition_id=edition.id, person=person, unit_registration_id=unit_registration.id,
        status=PS.awaiting_unit, status_changed_at=now())
    write_person_data(registration, person, data, edition)
    record(actor, "person_registration", registration.id, "join", to_state=PS.awaiting_unit,
           detail={"unit_number": number})
    db.session.commit()
    return registration


def _own_editable(actor: Actor) -> m.PersonRegistration:
    registration = own_registration(actor, WRITE, lock=True)
    if registration.status not in EDITABLE:
        raise WorkflowError(_l("Your data can no longer be changed here: the status is "
                               "\"%(status)s\". Ask your unit to change it.",
                               status=registration.status.label))
    return registration


def set_own_photo(actor: Actor, photo) -> m.PersonRegistration:
    """The person sends its ID photo while its unit has not decided: the unit can accept it
    only with a photo."""
    registration = _own_editable(actor)
    person = registration.person
    old_files = (person.photo_key, person.thumb_key)
    store_photo(person, photo)
    record(actor, "person_registration", registration.id, "update",
           detail={"fields": ["photo"]})
    db.session.commit()
    for key in old_files:
        storage.remove(key)
    return registration


def update_own(actor: Actor, data: PersonData) -> m.PersonRegistration:
    """The person changes its data while its unit has not decided yet."""
    registration = _own_editable(actor)
    edition = registration.edition
    require_delegation_window(edition, registration.unit_registration.delegation_id)
    data = _clean_own(data, edition)
    person = registration.person
    before = {"name": person.name, "id_type": str(person.id_type),
              "id_number": mask_id_number(person.id_number), "entry_days": registration.entry_days}
    write_person_data(registration, person, data, edition)
    record(actor, "person_registration", registration.id, "update",
           detail={"before": before})
    db.session.commit()
    return registration
