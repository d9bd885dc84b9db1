"""The unit's registration journey: unit information (autosaved), preview and submit, earlier
persons to carry forward, and the scoped photo files."""
from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from flask import (
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    request,
    send_from_directory,
    url_for,
)
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_babel import gettext as _

from app import models as m
from app.clock import SHANGHAI
from app.extensions import db
from app.formatting import fmt_datetime
from app.labels import fmt_zones
from app.scoping.actor import current_actor
from app.scoping.rules import get_scoped, row_id
from app.views.base import attempt
from app.workflow import persons, unit_info
from app.workflow.documents import EDITABLE_UNIT_STATES
from app.workflow.editions import current_edition
from app.workflow.errors import WorkflowError
from app.workflow.persons import unit_registration_for


def _my_registration() -> m.UnitRegistration:
    try:
        return unit_registration_for(current_actor(), current_edition())
    except WorkflowError as exc:
        abort(exc.status_code)


def _form_data() -> dict[str, Any]:
    """The unit information as sent: JSON (autosave), a beacon's payload, or the form."""
    if request.is_json or "payload" in request.form:
        data = request.get_json(silent=True) if request.is_json else \
            _json_or_none(request.form["payload"])
        return data if isinstance(data, dict) else {}
    data: dict[str, Any] = {k: request.form.get(k, "") for k in unit_info.TEXT_FIELDS}
    data["zones"] = request.form.getlist("zones")
    return data


def _posted_person_ids(name: str) -> list[int]:
    return [i for i in (row_id(m.Person, v) for v in request.form.getlist(name))
            if i is not None]


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


class UnitInfoView(BaseView):
    """Unit information with a draft saved every 5 seconds while the unit types."""

    route_base = "/unit/info"
    default_view = "edit"
    class_permission_name = "UnitInfo"

    @expose("/", methods=["GET", "POST"])
    @has_access
    @permission_name("edit")
    def edit(self):
        """The form; a refused save shows it again as it was sent (every tick and every typed
        value), with the reason, the field marked and the refusal's status (4xx)."""
        registration = _my_registration()
        values, refused, status = unit_info.form_values(registration), None, 200
        if request.method == "POST":
            data = _form_data()
            try:
                unit_info.save_info(current_actor(), data)
            except WorkflowError as exc:
                db.session.rollback()
                if exc.status_code == 404:
                    abort(404)
                flash(str(exc.message), "danger")
                values, refused, status = unit_info.typed_values(data), exc, exc.status_code
            else:
                flash(_("Saved."), "success")
                return redirect(url_for("UnitInfoView.edit"))
        areas = unit_info.zone_choices()
        offered = {z.id for _area, zones in areas for z in zones}
        return self.render_template(
            "ciie/unit/info.html", registration=registration, values=values, areas=areas,
            no_longer_offered=[z for z in registration.zones if z.id not in offered],
            error_field=getattr(refused, "field", None),
            editable=registration.status in EDITABLE_UNIT_STATES,
            saved_at=fmt_datetime(registration.draft_saved_at)), status

    @expose("/draft", methods=["POST"])
    @has_access
    @permission_name("edit")
    def draft(self):
        """The autosave: keep the typed text, valid or not. Returns when it was saved."""
        try:
            registration = unit_info.save_draft(current_actor(), _form_data())
        except WorkflowError as exc:
            db.session.rollback()
            return jsonify({"message": str(exc.message)}), exc.status_code
        return jsonify({"saved_at": registration.draft_saved_at.astimezone(SHANGHAI)
                        .strftime("%H:%M:%S")})


class UnitPreviewView(BaseView):
    """Everything the delegation will see, and the button that submits it."""

    route_base = "/unit/preview"
    default_view = "show"
    class_permission_name = "UnitPreview"

    @expose("/", methods=["GET"])
    @has_access
    @permission_name("show")
    def show(self):
        registration = _my_registration()
        PR = m.PersonRegistration
        person_rows = db.session.execute(
            sa.select(PR, m.Person).join(m.Person, m.Person.id == PR.person_id)
            .where(PR.unit_registration_id == registration.id).order_by(PR.id)).all()
        counts = unit_info.person_counts(registration.id)
        return self.render_template(
            "ciie/unit/preview.html", registration=registration, persons=person_rows,
            zones=fmt_zones(registration.zones),
            unsubmitted=counts.get(m.PersonStatus.draft, 0),
            missing=unit_info.missing_for_submission(registration),
            editable=registration.status in EDITABLE_UNIT_STATES)

    @expose("/submit", methods=["POST"])
    @has_access
    @permission_name("submit")
    def submit(self):
        outcome: dict[str, Any] = {}
        with_drafts = request.form.get("with_draft_persons") == "1"
        if attempt(lambda: outcome.update(result=unit_info.submit_unit(
                current_actor(), with_drafts)), _("Submitted to your delegation.")):
            result = outcome.get("result")
            if result is not None and result.refused:
                # Each refused person by name, with its reason (e.g. no photo yet).
                from markupsafe import Markup, escape

                flash(escape(_("%(count)d draft person(s) were not submitted: complete them "
                               "and submit them from the persons list.",
                               count=len(result.refused))) + Markup("<br>") + Markup(
                    "<br>").join(Markup("{}: {}").format(r.label, str(r.reason))
                                 for r in result.refused), "warning")
        return redirect(url_for("UnitPreviewView.show"))


class UnitCarryForwardView(BaseView):
    """Earlier-edition persons of a returning unit, to carry forward (optionally reusing a
    3rd- or 4th-edition badge)."""

    route_base = "/unit/previous-persons"
    default_view = "choose"
    class_permission_name = "UnitCarryForward"

    @expose("/", methods=["GET", "POST"])
    @has_access
    @permission_name("carry_forward")
    def choose(self):
        actor = current_actor()
        registration = _my_registration()
        ids: list[int] = []
        reuse: list[int] = []
        if request.method == "POST":
            ids, reuse = _posted_person_ids("person"), _posted_person_ids("reuse")
            if not ids:
                flash(_("Tick at least one person."), "warning")
            elif attempt(lambda: persons.carry_forward_persons(actor, ids, reuse),
                         _("%(count)d person(s) carried forward. Complete and submit them.",
                           count=len(ids))):
                return redirect(url_for("UnitPersonView.list"))
        # A refusal shows the page again with the same ticks.
        return self.render_template(
            "ciie/unit/previous_persons.html", rows=persons.previous_persons(actor),
            registration=registration, ticked=set(ids), reuse_ticked=set(reuse))


class PersonFileView(BaseView):
    """A person's photo and thumbnail, served to whoever may see the person."""

    route_base = "/files/person"
    class_permission_name = "PersonFiles"

    def _send(self, person_id: int, attr: str):
        person = get_scoped(m.Person, person_id)
        key = getattr(person, attr, None) if person is not None else None
        if not key:
            abort(404)
        return send_from_directory(current_app.config["UPLOAD_FOLDER"], key)

    @expose("/<int:person_id>/photo")
    @has_access
    @permission_name("photo")
    def photo(self, person_id: int):
        return self._send(person_id, "photo_key")

    @expose("/<int:person_id>/thumb")
    @has_access
    @permission_name("photo")
    def thumb(self, person_id: int):
        return self._send(person_id, "thumb_key")
