"""The administrator's pages: editions, delegations, taxonomy, partners, units, logs."""
from __future__ import annotations

import sqlalchemy as sa
from flask_appbuilder.models.sqla.filters import FilterEqual, FilterNotEqual
from flask_babel import lazy_gettext as _l
from wtforms import BooleanField
from wtforms.validators import DataRequired

from app import models as m
from app.extensions import db
from app.formatting import fmt_datetime
from app.labels import MASKED, fmt_zones
from app.scoping.actor import current_actor
from app.scoping.interface import ScopedInterface
from app.views.base import ScopedModelView
from app.workflow.errors import WorkflowError


class EditionView(ScopedModelView):
    route_base = "/admin/editions"
    class_permission_name = "EditionAdmin"
    datamodel = ScopedInterface(m.Edition)
    title = _l("Editions")
    base_order = ("number", "desc")
    list_columns = ["number", "start_date", "end_date", "badge_fee_fen", "delegation_deadline",
                    "transfer_deadline", "online_pay_deadline", "is_current"]
    show_columns = list_columns
    add_columns = edit_columns = list_columns
    label_columns = {"badge_fee_fen": _l("Badge fee (fen; 100 fen = 1 yuan)")}
    description_columns = {
        "delegation_deadline": _l("Beijing time"),
        "transfer_deadline": _l("Beijing time"),
        "online_pay_deadline": _l("Beijing time"),
    }

    def pre_add(self, item: m.Edition) -> None:
        if item.end_date < item.start_date:
            raise WorkflowError(_l("The last exhibition day cannot be before the first."), 400)
        if item.badge_fee_fen is None or item.badge_fee_fen < 0:
            raise WorkflowError(_l("The badge fee cannot be negative."), 400)
        if item.is_current:
            db.session.execute(sa.update(m.Edition).where(m.Edition.id != item.id)
                               .values(is_current=False))

    pre_update = pre_add


class DelegationView(ScopedModelView):
    route_base = "/admin/delegations"
    class_permission_name = "DelegationAdmin"
    datamodel = ScopedInterface(m.Delegation)
    title = _l("Delegations")
    base_order = ("code", "asc")
    list_columns = ["code", "name_zh", "name_en", "kind", "parent", "rollup_delegation",
                    "active"]
    show_columns = list_columns
    add_columns = edit_columns = ["code", "name_zh", "name_en", "kind", "parent",
                                  "rollup_delegation", "region", "active"]
    search_columns = ["code", "name_zh", "name_en", "kind", "parent"]

    def pre_add(self, item: m.Delegation) -> None:
        if item.rollup_delegation is not None and item.kind is not m.DelegationKind.industry:
            raise WorkflowError(_l("Only an industry delegation is counted under another "
                                   "delegation."), 400)
        if item.parent is not None and item.parent.parent_id is not None:
            raise WorkflowError(_l("A sub-delegation cannot have sub-delegations."), 400)

    pre_update = pre_add


# A new area or zone is offered at once: "active" starts ticked (views.base makes every
# yes/no field untickable).
_ACTIVE_FIELD = {"active": BooleanField(_l("Active"), default=True)}


class ExhibitionAreaView(ScopedModelView):
    """The exhibition areas (展区): zones without a parent. Deactivating one takes its zones
    off the unit information form; units' earlier choices stay."""

    route_base = "/admin/exhibition-areas"
    class_permission_name = "ExhibitionAreaAdmin"
    datamodel = ScopedInterface(m.Zone)
    title = _l("Exhibition areas")
    base_filters = [["parent_id", FilterEqual, None]]
    base_order = ("sort", "asc")
    list_columns = ["name_zh", "name_en", "sort", "active"]
    show_columns = add_columns = edit_columns = list_columns
    add_form_extra_fields = edit_form_extra_fields = _ACTIVE_FIELD
    search_columns = ["name_zh", "name_en", "active"]


class ZoneView(ScopedModelView):
    """The zones (专区) units choose, each under an exhibition area."""

    route_base = "/admin/zones"
    class_permission_name = "ZoneAdmin"
    datamodel = ScopedInterface(m.Zone)
    title = _l("Zones")
    base_filters = [["parent_id", FilterNotEqual, None]]
    base_order = ("sort", "asc")
    list_columns = ["parent", "name_zh", "name_en", "sort", "active"]
    show_columns = add_columns = edit_columns = list_columns
    add_form_extra_fields = edit_form_extra_fields = _ACTIVE_FIELD
    search_columns = ["parent", "name_zh", "name_en", "active"]
    label_columns = {"parent": _l("Exhibition area")}
    validators_columns = {"parent": [DataRequired()]}
    add_form_query_rel_fields = edit_form_query_rel_fields = search_form_query_rel_fields = {
        "parent": [["parent_id", FilterEqual, None]]
    }

    def pre_add(self, item: m.Zone) -> None:
        if item.parent is None or item.parent.parent_id is not None:
            raise WorkflowError(_l("Choose the exhibition area the zone belongs to."), 400)

    pre_update = pre_add


class ReferralCodeView(ScopedModelView):
    route_base = "/admin/referral-codes"
    class_permission_name = "ReferralCodes"
    datamodel = ScopedInterface(m.ReferralCode)
    title = _l("Referral codes")
    base_order = ("code", "asc")
    list_columns = ["code", "partner_name_zh", "partner_name_en", "regional", "active",
                    "created_at"]
    show_columns = list_columns
    add_columns = edit_columns = ["code", "partner_name_zh", "partner_name_en", "regional",
                                  "active"]
    search_columns = ["code", "partner_name_zh", "regional"]

    def pre_add(self, item: m.ReferralCode) -> None:
        item.code = (item.code or "").strip().upper()
        if not item.code:
            raise WorkflowError(_l("Enter a code."), 400)

    pre_update = pre_add


class OrganiserView(ScopedModelView):
    route_base = "/admin/organisers"
    class_permission_name = "OrganiserAdmin"
    datamodel = ScopedInterface(m.Organiser)
    title = _l("Event organisers")
    list_columns = ["name_zh", "name_en"]
    show_columns = add_columns = edit_columns = list_columns


class UnitAdminView(ScopedModelView):
    route_base = "/admin/units"
    class_permission_name = "UnitsAdmin"
    datamodel = ScopedInterface(m.UnitRegistration)
    title = _l("Units")
    base_order = ("id", "desc")
    list_columns = ["unit.name", "unit.uscc", "unit.region", "delegation", "sub_delegation",
                    "status", "unit_number", "edition"]
    show_columns = list_columns + ["contact_name", "contact_mobile", "contact_email",
                                   "zones", "review_reason", "referral_code"]
    search_columns = ["status", "delegation", "edition"]
    base_permissions = ["can_list", "can_show"]
    formatters_columns = {"contact_mobile": MASKED["contact_mobile"], "zones": fmt_zones}


class DelegationExtensionView(ScopedModelView):
    """Deadline extensions an admin grants to one delegation; each grant is audited."""

    route_base = "/admin/extensions"
    class_permission_name = "ExtensionAdmin"
    datamodel = ScopedInterface(m.DelegationExtension)
    title = _l("Deadline extensions")
    list_columns = ["edition", "delegation", "until", "reason", "granted_at"]
    show_columns = list_columns
    add_columns = edit_columns = ["edition", "delegation", "until", "reason"]
    add_form_query_rel_fields = edit_form_query_rel_fields = {
        "delegation": [["parent_id", FilterEqual, None]]
    }

    def pre_add(self, item: m.DelegationExtension) -> None:
        if not (item.reason or "").strip():
            raise WorkflowError(_l("Give a reason for the extension."), 400)
        if item.edition is not None and item.delegation is not None:
            E = m.DelegationExtension
            existing = db.session.scalars(sa.select(E).where(
                E.edition_id == item.edition.id, E.delegation_id == item.delegation.id,
                E.id != (item.id or 0))).first()
            if existing is not None:
                raise WorkflowError(_l(
                    "%(delegation)s already has an extension until %(until)s (Beijing time): "
                    "change that one in the list instead.", delegation=item.delegation.name,
                    until=fmt_datetime(existing.until)), 400)
        item.granted_by_id = current_actor().user_id

    pre_update = pre_add


class AuditEventView(ScopedModelView):
    route_base = "/admin/audit"
    class_permission_name = "AuditLog"
    datamodel = ScopedInterface(m.AuditEvent)
    title = _l("Audit log")
    base_order = ("id", "desc")
    list_columns = ["at", "actor_name", "record_type", "record_id", "action", "from_state",
                    "to_state", "reason"]
    show_columns = list_columns + ["detail"]
    search_columns = ["actor_name", "record_type", "record_id", "action", "at"]
    base_permissions = ["can_list", "can_show"]


class NotificationView(ScopedModelView):
    route_base = "/admin/notifications"
    class_permission_name = "NotificationLog"
    datamodel = ScopedInterface(m.Notification)
    title = _l("Notification log")
    base_order = ("id", "desc")
    list_columns = ["created_at", "channel", "recipient", "subject", "status", "attempts",
                    "sent_at"]
    show_columns = list_columns + ["body", "last_error", "dedupe_key"]
    search_columns = ["channel", "status", "recipient"]
    base_permissions = ["can_list", "can_show"]
    label_columns = {"channel": _l("Channel"), "recipient": _l("Recipient")}
