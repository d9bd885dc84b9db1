"""The unit's information for an edition: autosaved drafts, saving, and submitting it to the
delegation (with at least one person submitted before or at the same time)."""
from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l

from app import models as m
from app.clock import now
from app.extensions import db
from app.scoping.actor import Actor
from app.validation import ValidationFailed, normalise_mobile
from app.workflow.audit import record
from app.workflow.documents import EDITABLE_UNIT_STATES
from app.workflow.editions import current_edition, require_delegation_window
from app.workflow.errors import BatchResult, WorkflowError
from app.workflow.persons import submit_persons, unit_registration_for
from app.workflow.transitions import move
from app.workflow.units import SUBMITTED_PERSON_STATUSES, UNIT_MOVES, unit_label

# The fields of the unit information form, as stored in the autosaved draft.
TEXT_FIELDS = ("name", "name_en", "address", "contact_name", "contact_title",
               "contact_mobile", "contact_email", "purchase_intentions", "reason")
UNIT_FIELDS = ("name", "name_en", "address")
MAX_DRAFT_CHARS = 20000


def _editable(actor: Actor) -> m.UnitRegistration:
    registration = unit_registration_for(actor, current_edition())
    if registration.status not in EDITABLE_UNIT_STATES:
        raise WorkflowError(_l("The unit information was submitted and is read-only until the "
                               "delegation returns it for changes."))
    return registration


def save_draft(actor: Actor, data: dict[str, Any]) -> m.UnitRegistration:
    """Keep what the unit typed, valid or not (the autosave); nothing else changes."""
    registration = _editable(actor)
    draft = {k: str(data.get(k) or "")[:MAX_DRAFT_CHARS] for k in TEXT_FIELDS if k in data}
    zones = data.get("zones")
    if isinstance(zones, list):
        draft["zones"] = [int(z) for z in zones if str(z).isdigit()][:100]
    registration.draft_data = draft
    registration.draft_saved_at = now()
    db.session.commit()
    return registration


def form_values(registration: m.UnitRegistration) -> dict[str, Any]:
    """What the form shows: the saved record, overlaid with a newer autosaved draft."""
    unit = registration.unit
    values: dict[str, Any] = {k: getattr(unit if k in UNIT_FIELDS else registration, k) or ""
                              for k in TEXT_FIELDS}
    values["zones"] = [z.id for z in registration.zones]
    if registration.draft_data:
        values.update(registration.draft_data)
    return values


def save_info(actor: Actor, data: dict[str, Any]) -> m.UnitRegistration:
    """Save the form into the record (formats checked; completeness is checked at submission)."""
    registration = _editable(actor)
    unit = registration.unit
    mobile = (data.get("contact_mobile") or "").strip()
    email = (data.get("contact_email") or "").strip()
    try:
        mobile = normalise_mobile(mobile) if mobile else None
    except ValidationFailed as exc:
        raise WorkflowError(exc.message, 400) from None
    if email and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", email):
        raise WorkflowError(_l("Enter a valid e-mail address."), 400)
    if not (data.get("name") or "").strip():
        raise WorkflowError(_l("Enter the unit's name."), 400)
    changes = {}
    for key in TEXT_FIELDS:
        value = (data.get(key) or "").strip() or None
        if key == "contact_mobile":
            value = mobile
        elif key == "contact_email":
            value = email or None
        target = unit if key in UNIT_FIELDS else registration
        if getattr(target, key) != value:
            changes[key] = value
            setattr(target, key, value)
    zone_ids = [int(z) for z in data.get("zones") or [] if str(z).isdigit()]
    registration.zones = list(db.session.scalars(sa.select(m.Zone).where(
        m.Zone.id.in_(zone_ids), m.Zone.active.is_(True))))
    registration.draft_data = None
    registration.draft_saved_at = None
    record(actor, "unit_registration", registration.id, "update",
           detail={"fields": sorted(changes), "zones": zone_ids})
    db.session.commit()
    return registration


def missing_for_submission(registration: m.UnitRegistration) -> list[Any]:
    """What the unit must still fill in before it can submit (empty when complete)."""
    missing = []
    labels = {"contact_name": _l("contact person"), "contact_mobile": _l("contact's mobile"),
              "contact_email": _l("contact's e-mail"),
              "purchase_intentions": _l("purchase intentions"),
              "reason": _l("the reason for attending")}
    for key, label in labels.items():
        if not getattr(registration, key):
            missing.append(label)
    if not registration.zones:
        missing.append(_l("at least one industry or zone of interest"))
    if registration.unit.region is m.Region.domestic:
        if not registration.documents:
            missing.append(_l("a qualification document"))
        if registration.delegation_id is None:
            missing.append(_l("a trading delegation"))
    if registration.draft_data:
        missing.append(_l("save the changes typed in the form"))
    return missing


def person_counts(registration_id: int) -> dict[m.PersonStatus, int]:
    PR = m.PersonRegistration
    return dict(db.session.execute(
        sa.select(PR.status, sa.func.count()).where(PR.unit_registration_id == registration_id)
        .group_by(PR.status)).all())


def submit_unit(actor: Actor, with_draft_persons: bool = True) -> BatchResult | None:
    """Submit the unit to its delegation; its draft persons may go with it. At least one
    person must be submitted before or at the same time."""
    registration = _editable(actor)
    require_delegation_window(current_edition(), registration.delegation_id)
    missing = missing_for_submission(registration)
    if missing:
        raise WorkflowError(_l("Complete the unit information first: %(missing)s.",
                               missing=", ".join(str(x) for x in missing)), 400)
    persons_result = None
    if with_draft_persons:
        PR = m.PersonRegistration
        drafts = sa.select(PR.id).where(PR.unit_registration_id == registration.id,
                                        PR.status == m.PersonStatus.draft)
        persons_result = submit_persons(actor, drafts, commit=False)
    counts = person_counts(registration.id)
    if not any(counts.get(s, 0) for s in SUBMITTED_PERSON_STATUSES):
        db.session.rollback()
        raise WorkflowError(_l("Submit at least one person before or together with the unit."))
    submitted = move(actor, m.UnitRegistration, [registration.id], UNIT_MOVES["submit"],
                     label=unit_label(), values={"submitted_at": now(), "review_reason": None},
                     commit=False)
    if not submitted.done:
        db.session.rollback()
        raise WorkflowError(_l("The unit was changed meanwhile; reload the page."))
    db.session.commit()
    return persons_result
