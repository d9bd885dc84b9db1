"""Person transitions: fill in, submit, join approval, cancellation."""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Iterable

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy.exc import IntegrityError

from app import models as m
from app import storage
from app.clock import now
from app.documents import photo_check
from app.documents.photo_check import PhotoCheck
from app.extensions import db
from app.formatting import mask_id_number
from app.scoping.actor import WRITE, Actor
from app.scoping.rules import get_scoped, scoped
from app.search_keys import document_key, person_keys
from app.validation import ValidationFailed, normalise_mobile, normalise_text, read_id_document
from app.workflow.audit import record
from app.workflow.editions import current_edition, require_delegation_window
from app.workflow.errors import BatchResult, WorkflowError
from app.workflow.transitions import Move, as_id_select, move, table

PS = m.PersonStatus
EDITABLE = (PS.draft,)
# After submission only the entry dates may change, until the person is in an order
# (订单生成前，专业观众可修改入场日期) or its review has been decided.
ENTRY_DATES_EDITABLE = (PS.submitted, PS.awaiting_lock, PS.awaiting_payment, PS.awaiting_review)

# The person registration's state machine (docs/design.md, "Person state machine"); the
# modules that make each move: persons (submit, joins, cancel), locking, payments, review,
# badges, refunds.
PERSON_MOVES = table({
    "submit": Move(from_={PS.draft}, to=PS.submitted),
    # A badge-reuse person waits for the delegation to confirm or upgrade the earlier tag.
    "submit_reuse": Move(from_={PS.draft}, to=PS.awaiting_lock, action="submit"),
    "accept_join": Move(from_={PS.awaiting_unit}, to=PS.submitted),
    "refuse_join": Move(from_={PS.awaiting_unit}, to=PS.cancelled),
    # Tagging changes no status; it is a move so that it is guarded and audited like one.
    "tag": Move(from_={PS.submitted}, to=PS.submitted),
    "tag_reuse": Move(from_={PS.awaiting_lock}, to=PS.awaiting_lock, action="tag"),
    "lock_paying": Move(from_={PS.submitted, PS.awaiting_lock}, to=PS.awaiting_payment,
                        action="lock"),
    "lock_free": Move(from_={PS.submitted, PS.awaiting_lock}, to=PS.awaiting_review,
                      action="lock"),
    "order": Move(from_={PS.awaiting_payment}, to=PS.in_order),
    "order_cancelled": Move(from_={PS.in_order}, to=PS.awaiting_payment),
    "paid": Move(from_={PS.in_order}, to=PS.awaiting_review),
    "review_passed": Move(from_={PS.awaiting_review}, to=PS.approved),
    "review_failed": Move(from_={PS.awaiting_review}, to=PS.rejected),
    "issue_badge": Move(from_={PS.approved}, to=PS.badge_issued),
    # Any time before the badge is issued; a person in an unpaid order leaves it by
    # cancelling the order first.
    "cancel": Move(from_={PS.draft, PS.awaiting_unit, PS.submitted, PS.awaiting_lock,
                          PS.awaiting_payment, PS.awaiting_review, PS.approved},
                   to=PS.cancelled),
    "refunded": Move(from_={PS.rejected, PS.cancelled}, to=PS.refunded),
})


@dataclass
class PersonData:
    name: str
    gender: m.Gender | None   # None: read from the ID number
    id_type: m.IdType
    id_number: str
    nationality: str
    mobile: str | None
    email: str | None
    job_title: str | None
    entry_dates: list[date]


def id_key(id_type: m.IdType, id_number: str) -> str:
    """PersonRegistration.id_key (app.search_keys.document_key)."""
    return document_key(m.IdType(id_type).value, id_number)


def set_search_keys(person: m.Person) -> None:
    """Key the person's numbers as they are now: every write of a number calls this."""
    for column, key in person_keys(person.id_number, person.mobile).items():
        setattr(person, column, key)


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


class FieldRefused(WorkflowError):
    """Input of one field refused (400, or 413 for a file too large): the form shows the
    reason at that field."""

    status_code = 400

    def __init__(self, field: str, message: Any, status_code: int = 400) -> None:
        super().__init__(message, status_code)
        self.field = field


def _gender(chosen: m.Gender | str | None, document) -> m.Gender:
    """The gender typed, which must agree with the ID number's gender digit (GB 11643: the
    17th digit is odd for men); left empty, it is read from the number."""
    chosen = m.Gender(chosen) if chosen else None
    if document.gender is None:
        if chosen is None:
            raise FieldRefused("gender", _l("Gender: choose the gender."))
        return chosen
    if chosen is not None and chosen is not document.gender:
        raise FieldRefused("gender", _l("Gender: the ID number is that of a person of gender "
                                        "\"%(gender)s\"; check the gender or the number.",
                                        gender=document.gender.label))
    return document.gender


# The person form and the spreadsheet import (app/workflow/person_import.py) check each field
# with these functions: one rule, one message, whichever way the person comes in.
NAME_MAX = 100
TEXT_MAX = 100
EMAIL_MAX = 254
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def clean_name(value: str | None) -> str:
    """The name as typed (full-width forms read as ASCII); never a formula."""
    name = normalise_text(value).strip()
    if not name:
        raise FieldRefused("name", _l("Name: enter the name."))
    if len(name) > NAME_MAX:
        raise FieldRefused("name", _l("Name: at most %(max)d characters.", max=NAME_MAX))
    if name.startswith("="):
        raise FieldRefused("name", _l("Name: “%(text)s” is a formula; type the name itself.",
                                      text=name[:40]))
    return name


def clean_nationality(value: str | None) -> str:
    """A 2-letter country code (ISO 3166-1), CN when left empty."""
    code = normalise_text(value).strip().upper() or "CN"
    if not _COUNTRY.match(code):
        raise FieldRefused("nationality", _l("Nationality: the 2-letter country code, e.g. "
                                             "CN, HK, US."))
    return code


def clean_email(value: str | None) -> str | None:
    email = (value or "").strip()
    if not email:
        return None
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError:
        raise FieldRefused("email", _l("E-mail: this is not a valid e-mail address.")) from None
    if len(email) > EMAIL_MAX:
        raise FieldRefused("email", _l("E-mail: at most %(max)d characters.", max=EMAIL_MAX))
    return email


def clean_job_title(value: str | None) -> str | None:
    title = normalise_text(value).strip()
    if len(title) > TEXT_MAX:
        raise FieldRefused("job_title", _l("Job title: at most %(max)d characters.",
                                           max=TEXT_MAX))
    return title or None


def clean_entry_dates(dates: Iterable[date], edition: m.Edition) -> list[date]:
    dates = sorted(set(dates))
    days = set(edition.days)
    if any(d not in days for d in dates):
        raise FieldRefused("entry_dates", _l(
            "Entry dates must be exhibition days (%(first)s to %(last)s).",
            first=edition.start_date.isoformat(), last=edition.end_date.isoformat()))
    return dates


def person_refusals(data: PersonData, edition: m.Edition
                    ) -> tuple[PersonData | None, list[FieldRefused]]:
    """Every field of the person checked: the cleaned data, or None and each field's refusal
    (the ID number, mobile, gender and entry dates first, as the form reports them)."""
    refusals: list[FieldRefused] = []

    def checked(check: Any, *args: Any) -> Any:
        try:
            return check(*args)
        except FieldRefused as exc:
            refusals.append(exc)
            return None

    def document_of(id_type: m.IdType, number: str | None) -> Any:
        try:
            return read_id_document(id_type, number)
        except ValidationFailed as exc:
            raise FieldRefused("id_number", exc.message) from None

    def mobile_of(value: str | None) -> str | None:
        try:
            return normalise_mobile(value) if value else None
        except ValidationFailed as exc:
            raise FieldRefused("mobile", exc.message) from None

    document = checked(document_of, data.id_type, data.id_number)
    mobile = checked(mobile_of, data.mobile)
    gender = checked(_gender, data.gender, document) if document is not None else None
    dates = checked(clean_entry_dates, data.entry_dates, edition)
    name = checked(clean_name, data.name)
    nationality = checked(clean_nationality, data.nationality)
    email = checked(clean_email, data.email)
    job_title = checked(clean_job_title, data.job_title)
    if refusals:
        return None, refusals
    return PersonData(name, gender, m.IdType(data.id_type), document.number, nationality,
                      mobile, email, job_title, dates), []


def _clean(data: PersonData, edition: m.Edition) -> PersonData:
    cleaned, refusals = person_refusals(data, edition)
    if refusals:
        raise refusals[0]
    return cleaned


PHOTO_TYPES = ("image/jpeg", "image/png")
THUMBNAIL_SIZE = (120, 160)


def store_photo(person: m.Person, file_storage) -> PhotoCheck:
    """Check an uploaded badge photo (app/documents/photo_check.py) and, unless refused, store
    it upright with its thumbnail and put the keys, the verdict and the figures on the person.
    A refusal names the photo field and every reason; the caller removes the old files after
    its commit."""
    try:
        data, _content_type, ext = storage.read_upload(
            file_storage, current_app.config["MAX_PHOTO_BYTES"], PHOTO_TYPES)
    except WorkflowError as exc:
        raise FieldRefused("photo", _l("Photo: %(reason)s", reason=exc.message),
                           exc.status_code) from None
    limits = photo_check.PhotoLimits.from_config(current_app.config)
    too_large = photo_check.oversized(data, limits)
    if too_large is not None:
        raise FieldRefused("photo", _("Photo: %(problems)s", problems=str(too_large)))
    image, turned = photo_check.upright(data)
    check = photo_check.check_photo(image, limits)
    if check.verdict is m.PhotoVerdict.refused:
        raise FieldRefused("photo", photo_message(check, limits))
    if turned:
        # Stored as the check saw it: badges and viewers that ignore the orientation tag
        # show it upright too.
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=92)
        data, ext = buffer.getvalue(), "jpg"
    thumb = image.convert("RGB")
    thumb.thumbnail(THUMBNAIL_SIZE)
    buffer = io.BytesIO()
    thumb.save(buffer, "JPEG", quality=85)
    person.photo_key, person.thumb_key = storage.store(data, ext), storage.store(
        buffer.getvalue(), "jpg")
    person.photo_verdict, person.photo_check = check.verdict, check.figures()
    return check


def photo_message(check: PhotoCheck, limits: photo_check.PhotoLimits) -> str:
    """"Photo: " and each problem found, in the request's language."""
    return _("Photo: %(problems)s", problems=" ".join(
        str(photo_check.problem_message(p, check, limits)) for p in check.problems))


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
    set_search_keys(person)
    registration.id_key = id_key(data.id_type, data.id_number)
    registration.entry_days = edition.days_to_mask(data.entry_dates)
    try:
        db.session.add(registration)
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise WorkflowError(_l("A person with this ID document is already registered for "
                               "this edition."), 409) from None


def require_persons_open(edition: m.Edition, unit_registration: m.UnitRegistration) -> None:
    """Persons are added and changed (by the form or from a spreadsheet) until the delegation
    deadline, and not by a unit whose registration was rejected."""
    if unit_registration.status is m.UnitStatus.rejected:
        raise WorkflowError(_l("Your unit's registration was rejected; persons cannot be "
                               "added."))
    require_delegation_window(edition, unit_registration.delegation_id)


def save_person(actor: Actor, data: PersonData, registration_id: int | None = None,
                photo=None) -> m.PersonRegistration:
    """Create a draft person of the actor's unit, or change one that is still a draft.
    A badge-reuse person keeps what the old badge shows: only contact details change."""
    edition = current_edition()
    unit_registration = unit_registration_for(actor, edition)
    require_persons_open(edition, unit_registration)
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
        before = {"name": person.name, "id_number": mask_id_number(person.id_number)}
        if registration.is_reuse:
            return _save_reuse_contacts(actor, registration, data)
    old_files = (person.photo_key, person.thumb_key) if photo else (None, None)
    if photo:
        store_photo(person, photo)
    write_person_data(registration, person, data, edition)
    record(actor, "person_registration", registration.id,
           "create" if before is None else "update",
           to_state=registration.status if before is None else None,
           detail=None if before is None else {"before": before})
    db.session.commit()
    for key in old_files:
        storage.remove(key)
    return registration


def _save_reuse_contacts(actor: Actor, registration: m.PersonRegistration,
                         data: PersonData) -> m.PersonRegistration:
    person = registration.person
    person.mobile, person.email, person.job_title = data.mobile, data.email, data.job_title
    set_search_keys(person)
    record(actor, "person_registration", registration.id, "update",
           detail={"fields": ["mobile", "email", "job_title"]})
    db.session.commit()
    return registration


def _order_holding(registration_id: int) -> m.Order | None:
    """The pending or paid order the person is in, if any."""
    return db.session.scalars(
        sa.select(m.Order).join(m.OrderItem, m.OrderItem.order_id == m.Order.id)
        .where(m.OrderItem.person_registration_id == registration_id,
               m.OrderItem.active.is_(True))).first()


def entry_dates_refusal(registration: m.PersonRegistration) -> Any | None:
    """Why the person's entry dates cannot be changed now, or None when they can: until the
    person is in an order (or its review has been decided), not for a reused badge."""
    if registration.status in EDITABLE:
        return None
    if registration.is_reuse:
        return _l("A reused badge keeps the entry dates printed on it; they cannot be changed.")
    order = _order_holding(registration.id)
    if order is not None:
        if order.status is m.OrderStatus.paid:
            return _l("The entry dates can no longer be changed: the person's badge was paid "
                      "with order %(number)s.", number=order.number)
        return _l("The entry dates can no longer be changed: the person is in order "
                  "%(number)s, which waits for payment. Cancel that order first to change "
                  "them.", number=order.number)
    if registration.status not in ENTRY_DATES_EDITABLE:
        return _l("The entry dates can no longer be changed: the status is \"%(status)s\".",
                  status=registration.status.label)
    return None


def change_entry_dates(actor: Actor, registration_id: int,
                       entry_dates: list[date]) -> m.PersonRegistration:
    """A unit changes a submitted person's entry dates (nothing else) until the person is in
    an order. The row is locked first: an order made meanwhile waits, or is seen here."""
    PR = m.PersonRegistration
    registration = db.session.scalars(scoped(
        sa.select(PR).where(PR.id == registration_id), PR, actor, WRITE,
    ).with_for_update(of=PR)).one_or_none()
    if registration is None:
        raise WorkflowError(_l("No such person."), 404)
    refusal = entry_dates_refusal(registration)
    if refusal is not None:
        raise WorkflowError(refusal, 409)
    edition = registration.edition
    dates = sorted(set(entry_dates))
    if not dates:
        raise WorkflowError(_l("Entry dates: choose at least one entry date."), 400)
    if any(d not in edition.days for d in dates):
        raise WorkflowError(_l("Entry dates must be exhibition days (%(first)s to %(last)s).",
                               first=edition.start_date.isoformat(),
                               last=edition.end_date.isoformat()), 400)
    before = registration.entry_dates
    if before != dates:
        registration.entry_days = edition.days_to_mask(dates)
        record(actor, "person_registration", registration.id, "change_entry_dates",
               detail={"from": [d.isoformat() for d in before],
                       "to": [d.isoformat() for d in dates]})
    db.session.commit()
    return registration


def has_photo():
    """SQL: the registration's person has a photo (each submitted person needs one)."""
    PR = m.PersonRegistration
    return sa.exists().where(m.Person.id == PR.person_id, m.Person.photo_key.is_not(None))


NO_PHOTO = _l("upload the person's photo first")


def submit_persons(actor: Actor, ids: Iterable[int] | sa.Select,
                   commit: bool = True) -> BatchResult:
    """A unit submits draft persons (each needs at least one entry date and a photo).
    Badge-reuse persons arrive with their previous tag and wait for the delegation's lock
    (awaiting_lock)."""
    edition = current_edition()
    unit_registration = unit_registration_for(actor, edition)
    require_delegation_window(edition, unit_registration.delegation_id)
    PR = m.PersonRegistration
    selected = as_id_select(PR, ids)
    result = BatchResult()
    for reuse, step in ((False, PERSON_MOVES["submit"]), (True, PERSON_MOVES["submit_reuse"])):
        part = move(actor, PR, sa.select(PR.id).where(PR.id.in_(selected),
                                                      PR.is_reuse.is_(reuse)),
                    step, label=person_label(),
                    checks=[(PR.entry_days > 0, _l("choose at least one entry date")),
                            (has_photo(), NO_PHOTO)],
                    values={"submitted_at": now(), "status_changed_at": now()}, commit=False)
        result.done += part.done
        result.refused += part.refused
    if commit:
        db.session.commit()
    return result


def cancel_persons(actor: Actor, ids: Iterable[int] | sa.Select,
                   reason: str | None = None) -> BatchResult:
    """A unit withdraws persons (注销) at any point before their badge is issued. A person in
    an unpaid order leaves it by cancelling the order first; paid persons become refundable."""
    if actor.unit_id is None:
        raise WorkflowError(_l("Only a unit account can do this."), 403)
    PR = m.PersonRegistration
    return move(actor, PR, ids, PERSON_MOVES["cancel"], label=person_label(), reason=reason,
                values={"status_changed_at": now()})


def decide_joins(actor: Actor, ids: Iterable[int] | sa.Select, accept: bool,
                 reason: str | None = None) -> BatchResult:
    """A unit accepts (→ submitted; the person needs a photo, sent from the app) or refuses
    (→ cancelled) persons who joined from the app."""
    if actor.unit_id is None:
        raise WorkflowError(_l("Only a unit account can do this."), 403)
    return move(actor, m.PersonRegistration, ids,
                PERSON_MOVES["accept_join" if accept else "refuse_join"], label=person_label(),
                checks=[(has_photo(), NO_PHOTO)] if accept else (),
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



def previous_persons(actor: Actor) -> list[dict]:
    """The unit's persons of earlier editions not yet registered for this one, newest
    registration first, with whether each may ask for badge reuse (one query each)."""
    edition = current_edition()
    registration = unit_registration_for(actor, edition)
    if registration.history_hidden or not registration.is_returning:
        return []
    PR = m.PersonRegistration
    already = sa.select(PR.person_id).where(PR.edition_id == edition.id)
    latest = (sa.select(PR.person_id, sa.func.max(m.Edition.number).label("edition"))
              .join(m.Edition, m.Edition.id == PR.edition_id)
              .join(m.Person, m.Person.id == PR.person_id)
              .where(m.Person.unit_id == actor.unit_id, m.Edition.number < edition.number,
                     PR.person_id.not_in(already))
              .group_by(PR.person_id).subquery())
    rows = db.session.execute(
        sa.select(m.Person, latest.c.edition).join(latest, latest.c.person_id == m.Person.id)
        .order_by(latest.c.edition.desc(), m.Person.name)).all()
    reusable = reusable_badges([person.id for person, _ in rows])
    return [{"person": person, "edition": number, "badge": reusable.get(person.id)}
            for person, number in rows]


@dataclass
class ReusableBadge:
    badge: m.Badge
    entry_days: int  # the days printed on it, kept for the reused badge


def reusable_badges(person_ids: list[int]) -> dict[int, ReusableBadge]:
    """Badges that may be reused: issued at the 3rd or 4th edition to a person who passed
    review there and still active (one query; the latest edition wins)."""
    if not person_ids:
        return {}
    PR = m.PersonRegistration
    rows = db.session.execute(
        sa.select(m.Badge, PR.entry_days).join(m.Edition, m.Edition.id == m.Badge.edition_id)
        .join(PR, sa.and_(PR.badge_id == m.Badge.id, PR.edition_id == m.Badge.edition_id))
        .where(m.Badge.person_id.in_(person_ids), m.Badge.active.is_(True),
               m.Edition.number.in_((3, 4)), PR.status == PS.badge_issued)
        .order_by(m.Edition.number)).all()
    return {badge.person_id: ReusableBadge(badge, days) for badge, days in rows}


def carry_forward_persons(actor: Actor, person_ids: list[int],
                          reuse_ids: list[int]) -> list[int]:
    """Register earlier-edition persons of the unit for this edition as drafts; those asking
    for badge reuse keep their badge's tag and entry days, and wait for the lock once
    submitted. Returns the new registration ids."""
    offered = {row["person"].id: row for row in previous_persons(actor)}
    unknown = set(person_ids) - set(offered)
    if unknown:
        raise WorkflowError(_l("Some of these persons cannot be carried forward."), 404)
    edition = current_edition()
    registration = unit_registration_for(actor, edition)
    require_delegation_window(edition, registration.delegation_id)
    new = []
    for person_id in person_ids:
        person, reusable = offered[person_id]["person"], offered[person_id]["badge"]
        reuse = person_id in reuse_ids
        if reuse and reusable is None:
            raise WorkflowError(_l("%(name)s has no 3rd- or 4th-edition badge that may be "
                                   "reused.", name=person.name), 409)
        badge = reusable.badge if reuse else None
        new.append(m.PersonRegistration(
            edition_id=edition.id, person_id=person.id, unit_registration_id=registration.id,
            id_key=id_key(person.id_type, person.id_number), status=PS.draft,
            entry_days=reusable.entry_days if reuse else 0, is_reuse=reuse,
            previous_badge_id=badge.id if badge else None,
            previous_tag=badge.tag if badge else None, tag=badge.tag if badge else None))
    try:
        db.session.add_all(new)
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise WorkflowError(_l("A person with this ID document is already registered for "
                               "this edition."), 409) from None
    for pr in new:
        record(actor, "person_registration", pr.id, "carry_forward", to_state=PS.draft,
               detail={"reuse": pr.is_reuse, "badge": pr.previous_badge_id})
    db.session.commit()
    return [pr.id for pr in new]
