"""The delegation's dashboard: review its units, see its persons (ID and mobile masked)."""
from __future__ import annotations

from typing import Callable

import sqlalchemy as sa
from flask import abort, jsonify
from flask_appbuilder import BaseView
from flask_appbuilder.baseviews import expose
from flask_appbuilder.fields import QuerySelectField
from flask_appbuilder.fieldwidgets import Select2Widget
from flask_appbuilder.security.decorators import has_access
from flask_babel import lazy_gettext as _l

from app import models as m
from app.exports import PERSONS, UNITS
from app.extensions import db
from app.formatting import mask_email, mask_mobile
from app.labels import COLUMN_LABELS, fmt_zones
from app.scoping.actor import current_actor
from app.scoping.interface import ScopedInterface, Selection
from app.scoping.rules import get_scoped, scoped
from app.statistics import delegation_statistics
from app.views.base import ScopedModelView, batch_action, download_link
from app.workflow.audit import record
from app.workflow.editions import current_edition


class DelegationDocumentView(ScopedModelView):
    """A unit's qualification documents, as its delegation sees them (read and download)."""

    route_base = "/delegation/documents"
    class_permission_name = "DelegationDocuments"
    datamodel = ScopedInterface(m.UnitDocument)
    title = _l("Qualification documents")
    list_columns = ["original_name", "content_type", "size_bytes", "uploaded_at", "storage_key"]
    show_columns = list_columns
    file_columns = ("storage_key",)
    base_permissions = ["can_list", "can_show", "can_download"]
    formatters_columns = {"storage_key": download_link("DelegationDocumentView")}


def _delegations(top_level: bool) -> Callable[[], list[m.Delegation]]:
    """The choices of a search filter on the unit's delegation or sub-delegation: a delegation
    user chooses among its own (and their sub-delegations), not among the expo's thousand."""
    def choices() -> list[m.Delegation]:
        D = m.Delegation
        level = D.parent_id.is_(None) if top_level else D.parent_id.is_not(None)
        stmt = scoped(sa.select(D).where(level).order_by(D.code), D)
        actor = current_actor()
        if actor.is_delegation:
            own = (*actor.top_delegation_ids, *actor.sub_delegation_ids,
                   *actor.rollup_delegation_ids)
            stmt = stmt.where(sa.or_(D.id.in_(own), D.parent_id.in_(own)))
        return list(db.session.scalars(stmt))

    return choices


def _delegation_field(column: str, top_level: bool) -> QuerySelectField:
    return QuerySelectField(COLUMN_LABELS[column], query_func=_delegations(top_level),
                            get_pk_func=lambda delegation: delegation.id, allow_blank=True,
                            widget=Select2Widget())


class DelegationPersonView(ScopedModelView):
    """Persons of the delegation's units; ID and mobile numbers are masked. The rows, search
    columns and formatters are those its export writes (app.exports.PERSONS)."""

    route_base = "/delegation/persons"
    class_permission_name = "DelegationPersons"
    datamodel = ScopedInterface(PERSONS.model)
    title = PERSONS.title
    base_filters = PERSONS.base_filters
    base_order = ("id", "desc")
    list_columns = ["person.name", "unit_registration.unit.name", "person.id_type",
                    "person.id_number", "person.mobile", "tag", "entry_days", "status",
                    "is_reuse"]
    show_columns = ["person.name", "person.gender", "unit_registration.unit.name",
                    "person.id_type", "person.id_number", "person.nationality", "person.mobile",
                    "person.job_title", "tag", "previous_tag", "entry_days", "status",
                    "is_reuse"]
    search_columns = PERSONS.search_columns
    search_form_extra_fields = {
        "unit_delegation_id": _delegation_field("unit_delegation_id", top_level=True),
        "unit_sub_delegation_id": _delegation_field("unit_sub_delegation_id", top_level=False),
    }
    base_permissions = ["can_list", "can_show", "can_reveal", "can_export"]
    export_operation = "export_persons"
    show_template = "ciie/person_show.html"
    formatters_columns = PERSONS.formatters_columns

    @batch_action("tag_visitor", _l("Tag: professional visitor"), None, "fa-tag")
    def tag_visitor(self, selection: Selection):
        return self.run_operation("tag_visitor", selection)

    @batch_action("tag_staff", _l("Tag: staff"), None, "fa-tag")
    def tag_staff(self, selection: Selection):
        return self.run_operation("tag_staff", selection)

    @batch_action("tag_vip", _l("Tag: VIP"), None, "fa-tag")
    def tag_vip(self, selection: Selection):
        return self.run_operation("tag_vip", selection)

    @batch_action("lock_persons", _l("Lock and submit"),
                  _l("After the lock the tags cannot change. Visitors will be asked to pay; "
                     "staff and VIPs go to security review."), "fa-lock")
    def lock_persons(self, selection: Selection):
        return self.run_operation("lock_persons", selection)

    @expose("/reveal/<int:pk>", methods=["POST"])
    @has_access
    def reveal(self, pk: int):
        """Show the full ID and mobile numbers of one person; every display is logged."""
        actor = current_actor()
        registration = get_scoped(m.PersonRegistration, pk, actor)
        if registration is None:
            abort(404)
        person = registration.person
        record(actor, "person", person.id, "pii_view",
               detail={"fields": ["id_number", "mobile"], "via": "delegation"})
        db.session.commit()
        return jsonify({"id_number": person.id_number, "mobile": person.mobile})


class DelegationUnitView(ScopedModelView):
    """Units of the delegation (and its sub-delegations); roll-ups are read-only. The rows,
    search columns and formatters are those its export writes (app.exports.UNITS)."""

    route_base = "/delegation/units"
    class_permission_name = "DelegationUnits"
    datamodel = ScopedInterface(UNITS.model)
    title = UNITS.title
    base_filters = UNITS.base_filters
    base_order = ("id", "desc")
    list_columns = ["unit.name", "unit.uscc", "unit.region", "unit.category", "sub_delegation",
                    "status", "unit_number", "submitted_at"]
    show_columns = ["unit.name", "unit.uscc", "unit.region", "unit.category", "delegation",
                    "sub_delegation", "status", "unit_number", "review_reason", "contact_name",
                    "contact_title", "contact_mobile", "contact_email", "purchase_intentions",
                    "zones", "reason", "referral_code", "submitted_at", "reviewed_at"]
    search_columns = UNITS.search_columns
    search_form_extra_fields = {
        "delegation": _delegation_field("delegation", top_level=True),
        "sub_delegation": _delegation_field("sub_delegation", top_level=False),
    }
    related_views = [DelegationDocumentView, DelegationPersonView]
    base_permissions = ["can_list", "can_show", "can_export"]
    export_operation = "export_units"
    formatters_columns = {**UNITS.formatters_columns, "zones": fmt_zones}
    reason_actions = ("return_units", "reject_units")

    @batch_action("approve_units", _l("Approve"),
                  _l("Approved units get their unit number."), "fa-check")
    def approve_units(self, selection: Selection):
        return self.run_operation("approve_units", selection)

    @batch_action("return_units", _l("Return for changes"), None, "fa-undo")
    def return_units(self, selection: Selection):
        return self.run_operation("return_units", selection)

    @batch_action("reject_units", _l("Reject"), None, "fa-times")
    def reject_units(self, selection: Selection):
        return self.run_operation("reject_units", selection)


class DelegationClaimView(ScopedModelView):
    """Requests to register a known unit afresh after every check failed: the delegation the
    claimant chose confirms who is asking (by the unit's official channels) before the account
    is handed over; until then nothing of the account changes."""

    route_base = "/delegation/claims"
    class_permission_name = "DelegationClaims"
    datamodel = ScopedInterface(m.AccountClaim)
    title = _l("Requests to register afresh")
    base_order = ("id", "desc")
    list_columns = ["unit.name", "unit.uscc", "name", "delegation", "sub_delegation", "status",
                    "created_at"]
    show_columns = ["unit.name", "unit.uscc", "unit.mobile", "unit.email", "name", "name_en",
                    "region", "category", "delegation", "sub_delegation", "mobile", "email",
                    "status", "created_at", "decided_at", "reason"]
    search_columns = ["status", "name", "created_at"]
    label_columns = {"name": _l("Unit name given by the claimant"),
                     "name_en": _l("English name given by the claimant"),
                     "mobile": _l("Claimant's mobile"), "email": _l("Claimant's e-mail")}
    base_permissions = ["can_list", "can_show"]
    # The contacts on file are the old owner's: masked. The claimant's are shown in full, to
    # call back and confirm.
    formatters_columns = {"unit.mobile": mask_mobile, "unit.email": mask_email}
    reason_actions = ("reject_claims",)

    @batch_action("approve_claims", _l("Confirm identity and hand over the account"),
                  _l("The claimant's password and contacts replace the unit's; the old "
                     "password stops working and earlier editions are hidden."), "fa-check")
    def approve_claims(self, selection: Selection):
        return self.run_operation("approve_claims", selection)

    @batch_action("reject_claims", _l("Refuse"), None, "fa-times")
    def reject_claims(self, selection: Selection):
        return self.run_operation("reject_claims", selection)


class DelegationStatsView(BaseView):
    """The delegation's numbers for the current edition, counted in the lists' own scope."""

    route_base = "/delegation/stats"
    class_permission_name = "DelegationStats"
    default_view = "list"

    @expose("/")
    @has_access
    def list(self):
        edition = current_edition()
        stats = delegation_statistics(current_actor(), edition.id)
        return self.render_template("ciie/stats.html", stats=stats, edition=edition)
