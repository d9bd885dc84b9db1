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
from app.scoping.rules import row_id
from app.validation import ValidationFailed, normalise_mobile
from app.workflow.audit import record
from app.workflow.documents import EDITABLE_UNIT_STATES
from app.workflow.editions import current_edition, require_delegation_window
from app.workflow.errors import BatchResult, InputRefused, WorkflowError
from app.workflow.persons import submit_persons, unit_registration_for
from app.workflow.transitions import move
from app.workflow.units import SUBMITTED_PERSON_STATUSES, UNIT_MOVES, unit_label

# The fields of the unit information form, as stored in the autosaved draft.
TEXT_FIELDS = ("name", "name_en", "address", "contact_name", "contact_title",
               "contact_mobile", "contact_email", "purchase_intentions", "reason")
UNIT_FIELDS = ("name", "name_en", "address")
MAX_DRAFT_CHARS = 20000
# Far more than the expo publishes: a longer list is not a choice anyone made.
MAX_ZONES = 200
# How a refusal or a missing item names the field.
FIELD_LABELS = {"name": _l("Unit name"), "contact_name": _l("contact person"),
                "contact_mobile": _l("contact's mobile"),
                "contact_email": _l("contact's e-mail"),
                "purchase_intentions": _l("purchase intentions"),
                "reason": _l("the reason for attending"),
                "zones": _l("Industries and zones of interest")}


class InfoRefused(WorkflowError):
    """A refused save of the form, naming the field the form marks."""

    def __init__(self, field: str, message: Any) -> None:
        super().__init__(_l("%(field)s: %(message)s", field=FIELD_LABELS[field],
                            message=message), 400)
        self.field = field


class ZonesRefused(InputRefused):
    """Zone ids the form never offered (unknown, inactive, an area): nothing is saved."""

    field = "zones"


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
    if isinstance(data.get("zones"), list):
        draft["zones"] = typed_zone_ids(data["zones"])[:MAX_ZONES]
    registration.draft_data = draft
    registration.draft_saved_at = now()
    db.session.commit()
    return registration


def typed_zone_ids(values: list[Any]) -> list[int]:
    """The zone ids among what was sent (anything that cannot be one left out)."""
    return [i for i in (row_id(m.Zone, v) for v in values) if i is not None]


def form_values(registration: m.UnitRegistration) -> dict[str, Any]:
    """What the form shows: the saved record, overlaid with a newer autosaved draft."""
    unit = registration.unit
    values: dict[str, Any] = {k: getattr(unit if k in UNIT_FIELDS else registration, k) or ""
                              for k in TEXT_FIELDS}
    values["zones"] = [z.id for z in registration.zones]
    if registration.draft_data:
        values.update(registration.draft_data)
    return values


def typed_values(data: dict[str, Any]) -> dict[str, Any]:
    """What the form shows again after a refused save: everything as it was sent."""
    values: dict[str, Any] = {k: str(data.get(k) or "") for k in TEXT_FIELDS}
    zones = data.get("zones")
    values["zones"] = typed_zone_ids(zones) if isinstance(zones, list) else []
    return values


def zone_choices() -> list[tuple[m.Zone, list[m.Zone]]]:
    """The form's choices: each active exhibition area with its active zones, in order."""
    # The areas first: each zone's parent is then read from the session, not queried.
    db.session.scalars(sa.select(m.Zone).where(m.Zone.parent_id.is_(None))).all()
    return m.zones_by_area(list(db.session.scalars(m.Zone.choosable())))


def _chosen_zones(sent: Any) -> list[m.Zone]:
    """The zones sent, each one the form offers; anything else refuses the whole save."""
    field = FIELD_LABELS["zones"]

    def not_a_value(value: Any) -> ZonesRefused:
        return ZonesRefused(_l("Check \"%(field)s\": \"%(value)s\" is not one of its values.",
                               field=field, value=str(value)[:40]))

    sent = sent if isinstance(sent, list) else [] if sent in (None, "") else [sent]
    # Values past the limit count as unreadable: nobody ticks that many.
    unreadable = [v for v in sent if row_id(m.Zone, v) is None] or sent[MAX_ZONES:]
    if unreadable:
        raise not_a_value(unreadable[0])
    ids = set(typed_zone_ids(sent))
    chosen = list(db.session.scalars(m.Zone.choosable().where(m.Zone.id.in_(ids))))
    refused = sorted(ids - {z.id for z in chosen})
    if not refused:
        return chosen
    offending = db.session.get(m.Zone, refused[0])
    if offending is None:
        raise not_a_value(refused[0])
    if offending.parent_id is None:
        raise ZonesRefused(_l("Check \"%(field)s\": \"%(area)s\" is an exhibition area: "
                              "choose zones under it. Nothing was saved.",
                              field=field, area=offending.name))
    raise ZonesRefused(_l("Check \"%(field)s\": \"%(zone)s\" is no longer offered. Choose "
                          "again; nothing was saved.", field=field, zone=offending.name))


def save_info(actor: Actor, data: dict[str, Any]) -> m.UnitRegistration:
    """Save the form into the record (formats checked; completeness is checked at submission).
    A refusal names its field; nothing is saved."""
    registration = _editable(actor)
    unit = registration.unit
    mobile = (data.get("contact_mobile") or "").strip()
    email = (data.get("contact_email") or "").strip()
    if not (data.get("name") or "").strip():
        raise InfoRefused("name", _l("Enter the unit's name."))
    try:
        mobile = normalise_mobile(mobile) if mobile else None
    except ValidationFailed as exc:
        raise InfoRefused("contact_mobile", exc.message) from None
    if email and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", email):
        raise InfoRefused("contact_email", _l("Enter a valid e-mail address."))
    zones = _chosen_zones(data.get("zones"))
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
    registration.zones = zones
    registration.draft_data = None
    registration.draft_saved_at = None
    record(actor, "unit_registration", registration.id, "update",
           detail={"fields": sorted(changes), "zones": sorted(z.id for z in zones)})
    db.session.commit()
    return registration


def missing_for_submission(registration: m.UnitRegistration) -> list[Any]:
    """What the unit must still fill in before it can submit (empty when complete)."""
    missing = []
    for key in ("contact_name", "contact_mobile", "contact_email", "purchase_intentions",
                "reason"):
        if not getattr(registration, key):
            missing.append(FIELD_LABELS[key])
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
