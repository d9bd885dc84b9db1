"""Qualification documents of a unit's registration (PDF/JPEG/PNG, checked by content)."""
from __future__ import annotations

from flask import current_app
from flask_babel import lazy_gettext as _l

from app import models as m
from app import storage
from app.extensions import db
from app.scoping.actor import WRITE, Actor
from app.scoping.rules import get_scoped
from app.workflow.audit import record
from app.workflow.editions import current_edition
from app.workflow.errors import WorkflowError
from app.workflow.persons import unit_registration_for
from app.workflow.units import UNIT_MOVES

DOCUMENT_TYPES = ("application/pdf", "image/jpeg", "image/png")
# A unit edits its information exactly while it may still submit it.
EDITABLE_UNIT_STATES = UNIT_MOVES["submit"].from_


def _require_editable(registration: m.UnitRegistration) -> None:
    if registration.status not in EDITABLE_UNIT_STATES:
        raise WorkflowError(_l("The unit information was submitted and is read-only until the "
                               "delegation returns it for changes."))


def add_document(actor: Actor, file_storage) -> m.UnitDocument:
    registration = unit_registration_for(actor, current_edition())
    _require_editable(registration)
    data, content_type, ext = storage.read_upload(
        file_storage, current_app.config["MAX_DOCUMENT_BYTES"], DOCUMENT_TYPES)
    key = storage.store(data, ext)
    document = m.UnitDocument(registration_id=registration.id, storage_key=key,
                              original_name=(file_storage.filename or "")[:255],
                              content_type=content_type, size_bytes=len(data))
    db.session.add(document)
    db.session.flush()
    record(actor, "unit_document", document.id, "upload",
           detail={"name": document.original_name, "bytes": len(data)})
    db.session.commit()
    return document


def delete_document(actor: Actor, document_id: int) -> None:
    document = get_scoped(m.UnitDocument, document_id, actor, WRITE)
    if document is None:
        raise WorkflowError(_l("No such document."), 404)
    _require_editable(document.registration)
    key = document.storage_key
    db.session.delete(document)
    record(actor, "unit_document", int(document_id), "delete")
    db.session.commit()
    storage.remove(key)
