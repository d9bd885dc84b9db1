"""The administrator's pages: editions, delegations, taxonomy, partners, units, logs, the
outside services."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

import sqlalchemy as sa
from flask import current_app, flash, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.models.sqla.filters import FilterEqual, FilterNotEqual
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_appbuilder.security.views import RoleModelView, UserDBModelView
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from wtforms import BooleanField
from wtforms.validators import DataRequired

from app import models as m
from app.clock import SHANGHAI
from app.extensions import db
from app.formatting import fmt_bool, fmt_datetime
from app.input_checks import check_lengths
from app.labels import COLUMN_LABELS, MASKED, ROLE_LABELS, fmt_zones
from app.providers import MODE_LABELS, PRODUCTION, SANDBOX, WAITING_LABELS, provider_reports
from app.scoping.actor import current_actor
from app.scoping.interface import ScopedInterface
from app.scoping.rules import scoped
from app.security_manager import raw_permission_label
from app.views.base import ScopedModelView
from app.workflow import audit
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
    """The audit trail as a person reads it: translated record types, actions and states, the
    record's name linking to its page, the actor's name; filtered by record, actor, action and
    Beijing time. A page costs one query per record type on it, whatever its length."""

    route_base = "/admin/audit"
    class_permission_name = "AuditLog"
    datamodel = ScopedInterface(m.AuditEvent)
    title = _l("Audit log")
    base_order = ("id", "desc")
    list_columns = ["at", "actor_name", "record_type", "record_id", "action", "from_state",
                    "to_state", "reason"]
    show_columns = list_columns + ["detail"]
    base_permissions = ["can_list", "can_show"]
    formatters_columns = {"record_type": audit.record_label, "action": audit.action_label,
                          "detail": lambda detail: fmt_detail(detail)}
    label_columns = {"detail": _l("Details")}
    search_columns = ["record_type", "record_id", "actor_name", "action", "at"]
    page_size = 50

    @expose("/list/")
    @has_access
    def list(self):
        try:
            filters = AuditFilters.from_args(request.args)
        except WorkflowError as exc:
            flash(str(exc.message), "danger")
            return self._render_log(AuditFilters(typed=request.args), [], 0, 0), \
                exc.status_code
        A = m.AuditEvent
        where = filters.conditions()
        total = db.session.scalar(scoped(sa.select(sa.func.count()).select_from(A)
                                         .where(*where), A))
        events = db.session.scalars(scoped(
            sa.select(A).where(*where).order_by(A.id.desc())
            .offset(filters.page * self.page_size).limit(self.page_size), A)).all()
        return self._render_log(filters, events, total, filters.page)

    def _render_log(self, filters: "AuditFilters", events: list, total: int, page: int):
        names = audit.record_names(events)
        actors = audit.actor_names(events)
        pages = record_pages({e.record_type for e in events})
        rows = []
        for e in events:
            page_of = pages.get(e.record_type)
            rows.append({
                "id": e.id, "at": fmt_datetime(e.at),
                "actor": actors.get(e.actor_id) or str(audit.ACTOR_LABELS.get(
                    e.actor_name, e.actor_name)),
                "login": e.actor_name, "has_account": e.actor_id is not None,
                "record_type": e.record_type, "record": audit.record_label(e.record_type),
                "record_id": e.record_id, "name": names.get((e.record_type, e.record_id)),
                "href": page_of(e.record_id) if page_of else None,
                "action": audit.action_label(e.action),
                "from": audit.state_label(e.record_type, e.from_state),
                "to": audit.state_label(e.record_type, e.to_state), "reason": e.reason,
                "changes": change_summary(e.record_type, e.detail),
            })
        kinds = {}
        for code, kind in audit.RECORD_KINDS.items():
            kinds.setdefault(id(kind), (code, str(kind.label)))
        return self.render_template(
            "ciie/audit_list.html", title=self.title, rows=rows, filters=filters.typed,
            record_types=sorted(kinds.values(), key=lambda kv: kv[1]),
            actions=sorted(((c, str(label)) for c, label in audit.ACTION_LABELS.items()),
                           key=lambda kv: kv[1]),
            total=total, page=page, page_count=max(1, -(-total // self.page_size)),
            page_args=lambda n: {**filters.typed, "page": n})


def change_summary(record_type: str, detail: Any) -> str:
    """What a change did, in a line: "Active: Yes → No", "+ reviewer", "− finance" (a long
    list of permissions is cut; the entry's page has it whole)."""
    if not isinstance(detail, dict):
        return ""
    own = {"user": UserDBModelView.label_columns,
           "role": RoleModelView.label_columns}.get(record_type, {})
    parts = []
    changes = detail.get("changes")
    for field, pair in (changes.items() if isinstance(changes, dict) else ()):
        if isinstance(pair, list) and len(pair) == 2:
            label = own.get(field) or COLUMN_LABELS.get(field) or field
            parts.append(f"{label}: {_shown(pair[0])} → {_shown(pair[1])}")
    # A user's roles and a role's permissions ("can_list · UnitPersons") are kept by their
    # codes: shown by their labels.
    def named(code: str) -> str:
        return raw_permission_label(code) if " · " in code else str(ROLE_LABELS.get(code, code))

    for key, sign in (("added", "+"), ("removed", "−")):
        names = detail.get(key)
        if isinstance(names, list) and names:
            more = f" (+{len(names) - 5})" if len(names) > 5 else ""
            parts.append(f"{sign} {', '.join(named(str(n)) for n in names[:5])}{more}")
    return "; ".join(parts)


def fmt_detail(detail: Any) -> Markup:
    """An entry's detail: what changed, in words, then the stored record as it is (codes a
    program wrote, not interface: marked so that no one translates it)."""
    if not detail:
        return Markup("")
    summary = change_summary("", detail)
    raw = json.dumps(detail, ensure_ascii=False, indent=1, sort_keys=True, default=str)
    return Markup('{}<pre class="ciie-raw" translate="no">{}</pre>').format(
        Markup("<p>{}</p>").format(summary) if summary else "", raw)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return fmt_bool(value)
    return "—" if value in (None, "") else str(value)


def record_pages(record_types: set[str]) -> dict[str, Callable[[int], str]]:
    """{record type: the URL of a record's page} for the types the reader can open: the
    first registered view of the record's model with a show page the reader may use and a
    menu entry it is shown (a view with base filters could refuse the row: not used)."""
    appbuilder = current_app.appbuilder
    sm = appbuilder.sm
    menu_of = {}
    stack = list(appbuilder.menu.get_list())
    while stack:
        item = stack.pop()
        stack.extend(item.childs)
        if item.baseview is not None:
            menu_of[id(item.baseview)] = item.name
    endpoints: dict[type, str] = {}
    for view in appbuilder.baseviews:
        model = getattr(getattr(view, "datamodel", None), "obj", None)
        if (model is None or model in endpoints or getattr(view, "base_filters", None)
                or not sm.has_access("can_show", view.class_permission_name)):
            continue
        menu_name = menu_of.get(id(view))
        if menu_name is not None and not sm.has_access("menu_access", menu_name):
            continue
        endpoints[model] = f"{view.endpoint}.show"
    pages = {}
    for record_type in record_types:
        kind = audit.RECORD_KINDS.get(record_type)
        endpoint = endpoints.get(kind.model) if kind is not None else None
        if endpoint is not None:
            pages[record_type] = lambda pk, endpoint=endpoint: url_for(endpoint, pk=pk)
    return pages


@dataclass
class AuditFilters:
    """The audit log's filters as typed (kept in the form), checked, as SQL conditions."""

    typed: Any
    record_type: str | None = None
    record_id: int | None = None
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    before: datetime | None = None
    page: int = 0

    @classmethod
    def from_args(cls, args: Any) -> "AuditFilters":
        typed = {k: (args.get(k) or "").strip() for k in FILTER_FIELDS if args.get(k)}
        # FAB's list filters (?_flt_0_record_id=…) name a column: the same filter, equal.
        for key, value in args.items():
            column = re.fullmatch(r"_flt_\d+_(\w+)", key)
            if column is None:
                continue
            field = FAB_COLUMNS.get(column[1])
            if field is None:
                raise WorkflowError(_l("Check \"%(field)s\": this list cannot be filtered by "
                                       "it.", field=column[1][:60]), 400)
            if field == "at":
                # A day or a minute, from its start to its end.
                _beijing_time(value.strip(), COLUMN_LABELS["at"])
                typed["from"] = typed["to"] = value.strip()
            else:
                typed[field] = value.strip()
        f = cls(typed=typed)
        if typed.get("type"):
            if typed["type"] not in audit.RECORD_KINDS:
                raise WorkflowError(_l("Check \"%(field)s\": choose one of the list.",
                                       field=COLUMN_LABELS["record_type"]), 400)
            f.record_type = typed["type"]
        if typed.get("rid"):
            rid = typed["rid"]
            # record_id is a 32-bit column (the audit table's own ids are 64-bit).
            f.record_id = int(rid) if re.fullmatch(r"-?\d{1,10}", rid) else None
            if f.record_id is None or not -(2 ** 31) <= f.record_id < 2 ** 31:
                raise WorkflowError(_l("Check \"%(field)s\": enter a whole number.",
                                       field=COLUMN_LABELS["record_id"]), 400)
        if typed.get("actor"):
            check_lengths(m.AuditEvent, {"actor_name": typed["actor"]})
            f.actor = typed["actor"]
        if typed.get("action"):
            if typed["action"] not in audit.ACTION_LABELS:
                raise WorkflowError(_l("Check \"%(field)s\": choose one of the list.",
                                       field=COLUMN_LABELS["action"]), 400)
            f.action = typed["action"]
        f.since = _beijing_time(typed.get("from"), _l("From (Beijing time)"))
        until = _beijing_time(typed.get("to"), _l("Until (Beijing time)"))
        if until is not None:
            # The end is inclusive: the whole minute typed, or the whole day.
            f.before = until + (timedelta(days=1) if len(typed["to"]) == 10
                                else timedelta(minutes=1))
        if typed.get("page"):
            if not typed["page"].isdigit() or int(typed["page"]) > 10 ** 6:
                raise WorkflowError(_l("Check \"%(field)s\": enter a whole number.",
                                       field=_l("Page")), 400)
            f.page = int(typed["page"])
        return f

    def conditions(self) -> list[Any]:
        A = m.AuditEvent
        where = []
        if self.record_type:
            where.append(A.record_type.in_(audit.record_codes_for(self.record_type)))
        if self.record_id is not None:
            where.append(A.record_id == self.record_id)
        if self.actor:
            users = sa.select(m.User.id).where(m.User.username == self.actor)
            where.append(sa.or_(A.actor_id.in_(users), A.actor_name == self.actor))
        if self.action:
            where.append(A.action == self.action)
        if self.since is not None:
            where.append(A.at >= self.since)
        if self.before is not None:
            where.append(A.at < self.before)
        return where


FILTER_FIELDS = ("type", "rid", "actor", "action", "from", "to", "page")
FAB_COLUMNS = {"record_type": "type", "record_id": "rid", "actor_name": "actor",
               "actor": "actor", "action": "action", "at": "at"}


def _beijing_time(text: str | None, field: Any) -> datetime | None:
    """A moment typed as Beijing wall-clock time: a date, or a date and a time (the browser's
    date-time field sends 2022-09-15T10:00)."""
    if not text:
        return None
    for fmt in ("%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=SHANGHAI)
        except ValueError:
            continue
    raise WorkflowError(_l("Check \"%(field)s\": enter a date (2022-09-15) or a date and a "
                           "time (2022-09-15 10:00).", field=field), 400)


class NotificationView(ScopedModelView):
    route_base = "/admin/notifications"
    class_permission_name = "NotificationLog"
    datamodel = ScopedInterface(m.Notification)
    title = _l("Notification log")
    base_order = ("id", "desc")
    list_columns = ["created_at", "channel", "recipient", "subject", "status", "attempts",
                    "sent_at"]
    show_columns = list_columns + ["body", "last_error", "dedupe_key", "provider",
                                   "provider_message_id", "provider_code", "receipt_at"]
    search_columns = ["channel", "status", "recipient"]
    base_permissions = ["can_list", "can_show"]
    label_columns = {"channel": _l("Channel"), "recipient": _l("Recipient"),
                     "provider": _l("SMS provider"), "provider_code": _l("Provider's code"),
                     "provider_message_id": _l("Provider's message id"),
                     "receipt_at": _l("Delivery report")}


class ProvidersView(BaseView):
    """The outside services (SMS, e-mail, online payments, e-invoices): each provider's mode,
    last success and failure, and what waits for a retry (app/providers.py)."""

    route_base = "/admin/providers"
    default_view = "show"
    class_permission_name = "Providers"

    @expose("/")
    @has_access
    @permission_name("show")
    def show(self):
        return self.render_template(
            "ciie/providers.html", rows=provider_reports(), modes=MODE_LABELS,
            waiting_labels=WAITING_LABELS, sandbox=SANDBOX, production=PRODUCTION,
            required=bool(current_app.config.get("PROVIDERS_REQUIRED")))
