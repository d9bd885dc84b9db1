"""The badge office (admins): its queues (persons waiting for a badge, reuse re-activations,
reprints, badges to pack), print sheets, pack parcels and ship them; the gate log. Units
follow their own badges and parcels. The gate's own pages are app/views/gate.py."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import abort, redirect, request, url_for
from flask_appbuilder import expose
from flask_appbuilder.models.filters import BaseFilter
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from sqlalchemy.orm import joinedload

from app import models as m
from app.extensions import db
from app.labels import fmt_entry_days
from app.scoping.actor import current_actor
from app.scoping.interface import ScopedInterface, Selection
from app.scoping.rules import get_scoped, row_id
from app.tasks import start_task
from app.views.base import ScopedModelView, attempt, batch_action, flash_batch_result
from app.views.unit import current_edition_id, thumbnail
from app.workflow import badges as badge_flow
from app.workflow import delivery
from app.workflow.editions import current_edition

BADGE_LABELS = {
    "number": _l("Badge number"),
    "badge.number": _l("Badge number"),
    "printed_name": _l("Name"),
    "printed_unit": _l("Unit"),
    "printed_delegation": _l("Delegation"),
    "reactivated_for_edition": _l("Re-activated for"),
    "shipment": _l("Parcel"),
    "parcel_slot": _l("Slot in parcel"),
    "shipment.status": _l("Parcel status"),
    "shipment.carrier": _l("Carrier"),
    "shipment.tracking_no": _l("Tracking number"),
    "shipment.shipped_at": _l("Shipped at"),
    "shipment.address": _l("Delivery address"),
    "produced_at": _l("Produced at"),
    "deactivated_at": _l("Deactivated at"),
    "carrier": _l("Carrier"),
    "tracking_no": _l("Tracking number"),
    "shipped_at": _l("Shipped at"),
    "delivered_at": _l("Delivered at"),
    "badge_count": _l("Badges"),
    "scanned_at": _l("Scanned at"),
    "result": _l("Result"),
    "badge.printed_name": _l("Name"),
    "gate": _l("Gate"),
    "scanned_by": _l("Scanned by"),
    "offline": _l("Checked offline"),
    "photo": _l("Photo"),
    "status_changed_at": _l("Waiting since"),
    "previous_badge.number": _l("Badge kept"),
    "reprint_requested_at": _l("Reprint asked for"),
    "reprint_reason": _l("Reason for the reprint"),
}


class InQueue(BaseFilter):
    """The rows of one of the badge office's queues: `value` is the workflow's SQL condition
    of that queue, for an edition id."""

    name = "queue"

    def apply(self, query: Any, value: Any) -> Any:
        return query.filter(value(current_edition_id()))


def photo_or_warning(person_id: int | None) -> Markup:
    """The thumbnail, or a warning: no badge is made without a photo."""
    if person_id:
        return thumbnail(person_id)
    return Markup('<span class="label label-danger ciie-no-photo">{}</span>').format(
        _("No photo"))


class BadgeQueueTabs:
    """The badge office's queues are tabs of one page (ciie/badges/queue.html)."""

    list_template = "ciie/badges/queue.html"
    base_permissions = ["can_list", "can_show"]
    label_columns = BADGE_LABELS

    def _list(self, **kwargs):
        widgets = super()._list(**kwargs)
        widgets["queue_tabs"] = queue_tabs(type(self).__name__)
        return widgets


def queue_tabs(active: str) -> list[dict]:
    """The queue page's tabs with their counts (one statement for all four)."""
    counts = badge_flow.queue_counts(current_actor(), current_edition_id())
    return [{"key": key, "label": label, "count": counts[key], "active": view == active,
             "url": url_for(f"{view}.list")} for view, key, label in QUEUE_TABS]


def run_as_task(name: str, selection: Selection) -> Any:
    """Start a badge operation as a background task (it ends with a file to download) and
    show its page; without Redis it has finished by the time the page opens."""
    ids = selection.id_list()
    task = start_task(current_actor(), name, {"ids": ids}, len(ids))
    return redirect(url_for("TaskView.show", task_id=task.id))


class BadgeProductionView(BadgeQueueTabs, ScopedModelView):
    """The first queue: persons of the current edition who passed security review and need a
    new card, longest waiting first. Nothing else (no drafts, no other states) is reachable."""

    route_base = "/badges/production"
    class_permission_name = "BadgeProduction"
    datamodel = ScopedInterface(m.PersonRegistration)
    title = _l("Waiting for a badge")
    base_filters = [["id", InQueue, badge_flow.waiting_for_badge]]
    base_order = ("status_changed_at", "asc")
    list_columns = ["photo", "person.name", "unit_registration.unit.name",
                    "unit_registration.sub_delegation", "tag", "is_reuse", "previous_tag",
                    "entry_days", "status_changed_at"]
    show_columns = list_columns + ["status"]
    search_columns = ["status", "tag", "is_reuse", "person_name", "unit_name",
                      "person_id_search", "person_mobile_search"]
    formatters_columns = {"entry_days": fmt_entry_days, "photo": photo_or_warning}

    @batch_action("produce_badges", _l("Produce badges"),
                  _l("Persons who passed security review get a badge, printed on A4 sheets. "
                     "Reused badges with an unchanged tag are re-activated and not printed."),
                  "fa-id-badge")
    def produce_badges(self, selection: Selection):
        return run_as_task("produce_badges", selection)


class ReactivationQueueView(BadgeQueueTabs, ScopedModelView):
    """Reuse persons who passed review with their tag unchanged: their earlier badge is made
    valid for this edition, nothing is printed."""

    route_base = "/badges/reactivations"
    class_permission_name = "BadgeReactivations"
    datamodel = ScopedInterface(m.PersonRegistration)
    title = _l("Re-activations")
    base_filters = [["id", InQueue, badge_flow.waiting_for_reactivation]]
    base_order = ("status_changed_at", "asc")
    list_columns = ["person.name", "unit_registration.unit.name", "tag",
                    "previous_badge.number", "entry_days", "status_changed_at"]
    show_columns = list_columns + ["status"]
    search_columns = ["tag", "person_name", "unit_name"]
    formatters_columns = {"entry_days": fmt_entry_days}

    @batch_action("reactivate_badges", _l("Re-activate"),
                  _l("The earlier badges become valid for this edition; nothing is printed."),
                  "fa-recycle")
    def reactivate_badges(self, selection: Selection):
        return badge_flow.reactivate_badges(current_actor(), selection.ids)


class ReprintQueueView(BadgeQueueTabs, ScopedModelView):
    """Lost or damaged cards to print again: the new card gets a new code, the old one stops
    opening the gate."""

    route_base = "/badges/reprints"
    class_permission_name = "BadgeReprints"
    datamodel = ScopedInterface(m.Badge)
    title = _l("Reprints")
    base_filters = [["id", InQueue, badge_flow.reprint_requested]]
    base_order = ("reprint_requested_at", "asc")
    list_columns = ["number", "printed_name", "printed_unit", "tag", "status",
                    "reprint_reason", "reprint_requested_at"]
    show_columns = list_columns
    search_columns = ["number", "printed_name", "printed_unit"]

    @batch_action("reprint_badges", _l("Print with a new code"),
                  _l("The codes printed on these badges so far stop working at the gate."),
                  "fa-refresh")
    def reprint_badges(self, selection: Selection):
        return run_as_task("reprint_badges", selection)


class PackingQueueView(BadgeQueueTabs, ScopedModelView):
    """Produced badges not in a parcel yet, of every unit: packed in one go, each unit's to
    its default address."""

    route_base = "/badges/to-pack"
    class_permission_name = "BadgePacking"
    datamodel = ScopedInterface(m.Badge)
    title = _l("To pack")
    base_filters = [["id", InQueue, delivery.waiting_for_parcel]]
    base_order = ("number", "asc")
    list_columns = ["number", "printed_name", "printed_unit", "tag", "produced_at"]
    show_columns = list_columns + ["status"]
    search_columns = ["number", "printed_name", "printed_unit", "tag"]

    @batch_action("pack_badges", _l("Pack into parcels"),
                  _l("Produced badges go to the default address of their unit, ten per parcel."),
                  "fa-archive")
    def pack_badges(self, selection: Selection):
        packing = delivery.pack_badges(current_actor(), selection.ids)
        flash_batch_result(packing)
        if packing.new_parcels:
            return redirect(url_for("ParcelView.list"))
        return self._back_to_list()


# The tabs of the queue page, in the order the badge office works through them, each with
# its count's key in badge_flow.queue_counts.
QUEUE_TABS = (("BadgeProductionView", "badges", _l("Waiting for a badge")),
              ("ReactivationQueueView", "reactivations", _l("Re-activations")),
              ("ReprintQueueView", "reprints", _l("Reprints")),
              ("PackingQueueView", "parcels", _l("To pack")))


class BadgeView(ScopedModelView):
    """Every badge: print (again), print with a new code, pack into parcels, deactivate."""

    route_base = "/badges/all"
    class_permission_name = "Badges"
    datamodel = ScopedInterface(m.Badge, [joinedload(m.Badge.edition),
                                          joinedload(m.Badge.reactivated_for_edition)])
    title = _l("Badges")
    base_order = ("number", "desc")
    list_columns = ["number", "printed_name", "printed_unit", "tag", "status", "active",
                    "edition", "reactivated_for_edition", "shipment", "parcel_slot",
                    "shipment.tracking_no"]
    show_columns = ["number", "printed_name", "printed_unit", "printed_delegation", "tag",
                    "status", "active", "edition", "reactivated_for_edition", "shipment",
                    "parcel_slot", "shipment.carrier", "shipment.tracking_no", "produced_at",
                    "deactivated_at"]
    search_columns = ["number", "printed_name", "printed_unit", "tag", "status", "active",
                      "edition"]
    base_permissions = ["can_list", "can_show"]
    label_columns = BADGE_LABELS
    reason_actions = {
        "deactivate_badges": (_l("Reason (the unit will see it):"), _l("Enter the reason.")),
        "request_reprints": (_l("Why is the card printed again (lost, damaged…)?"),
                             _l("Enter the reason.")),
    }

    @batch_action("print_badges", _l("Print"), None, "fa-print")
    def print_badges(self, selection: Selection):
        return run_as_task("print_badges", selection)

    @batch_action("reprint_badges", _l("Print with a new code"),
                  _l("The codes printed on these badges so far stop working at the gate."),
                  "fa-refresh")
    def reprint_badges(self, selection: Selection):
        return run_as_task("reprint_badges", selection)

    @batch_action("request_reprints", _l("Ask for a reprint"), None, "fa-clone")
    def request_reprints(self, selection: Selection):
        return badge_flow.request_reprints(current_actor(), selection.ids,
                                           request.form.get("reason"))

    @batch_action("pack_badges", _l("Pack into parcels"),
                  _l("Produced badges go to the default address of their unit, ten per parcel."),
                  "fa-archive")
    def pack_badges(self, selection: Selection):
        packing = delivery.pack_badges(current_actor(), selection.ids)
        flash_batch_result(packing)
        if packing.new_parcels:
            return redirect(url_for("ParcelView.list"))
        return self._back_to_list()

    @batch_action("deactivate_badges", _l("Deactivate"),
                  _l("Deactivated badges are refused at the gate."), "fa-ban")
    def deactivate_badges(self, selection: Selection):
        return badge_flow.deactivate_badges(current_actor(), selection.ids,
                                            request.form.get("reason"))


def parcel_actions(pk: int) -> Markup:
    """The parcel's number and the link to ship it."""
    return Markup('#{} <a class="btn btn-xs btn-default ciie-ship" href="{}">'
                  '<i class="fa fa-truck"></i> {}</a>').format(
        pk, url_for("ParcelView.ship", pk=pk), _("Ship"))


def packable_units() -> list[dict]:
    """Units with produced badges of the current edition not in a parcel yet, with their
    addresses (two queries)."""
    B = m.Badge
    rows = db.session.execute(
        sa.select(m.Unit.id, m.Unit.name, sa.func.count(B.id).label("badges"))
        .join(m.Person, m.Person.unit_id == m.Unit.id).join(B, B.person_id == m.Person.id)
        .where(delivery.waiting_for_parcel(current_edition().id))
        .group_by(m.Unit.id, m.Unit.name).order_by(m.Unit.name)).all()
    addresses: dict[int, list[m.Address]] = {}
    for address in db.session.scalars(sa.select(m.Address).where(
            m.Address.unit_id.in_([row.id for row in rows]))
            .order_by(m.Address.is_default.desc(), m.Address.slot)):
        addresses.setdefault(address.unit_id, []).append(address)
    return [{"id": row.id, "name": row.name, "badges": row.badges,
             "addresses": addresses.get(row.id, [])} for row in rows]


class ParcelView(ScopedModelView):
    """Parcels of badges: pack a unit's badges (to any of its addresses), ship, deliver."""

    route_base = "/badges/parcels"
    class_permission_name = "Parcels"
    # Each parcel shows its address: loaded with the list, not one query per row.
    datamodel = ScopedInterface(m.Shipment, [joinedload(m.Shipment.address)])
    title = _l("Parcels")
    list_template = "ciie/badges/parcels.html"
    show_template = "ciie/badges/parcel_show.html"
    base_order = ("id", "desc")
    list_columns = ["id", "unit.name", "address", "badge_count", "status", "carrier",
                    "tracking_no", "shipped_at", "delivered_at"]
    show_columns = list_columns
    search_columns = ["status", "unit", "tracking_no"]
    base_permissions = ["can_list", "can_show", "can_ship", "can_pack"]
    label_columns = {**BADGE_LABELS, "id": _l("Parcel")}
    formatters_columns = {"id": parcel_actions}

    def _list(self, **kwargs):
        widgets = super()._list(**kwargs)
        widgets["packable"] = packable_units()
        return widgets

    def _show(self, pk):
        widgets = super()._show(pk)
        # What is inside: the parcel's page lists its badges (the parcel itself is in scope).
        widgets["parcel_badges"] = delivery.parcel_badges(current_actor(), int(pk))
        return widgets

    @expose("/pack", methods=["POST"])
    @has_access
    @permission_name("pack")
    def pack(self):
        """Pack every produced, unpacked badge of one unit to the chosen address."""
        unit_id = row_id(m.Unit, request.form.get("unit"))
        address_id = row_id(m.Address, request.form.get("address"))
        if unit_id is None or address_id is None:
            abort(400)
        B = m.Badge
        badges = sa.select(B.id).join(m.Person, m.Person.id == B.person_id).where(
            m.Person.unit_id == unit_id, delivery.waiting_for_parcel(current_edition().id))
        outcome: list[delivery.Packing] = []
        if attempt(lambda: outcome.append(delivery.pack_badges(current_actor(), badges,
                                                               address_id))):
            flash_batch_result(outcome[0])
        return redirect(url_for("ParcelView.list"))

    @expose("/ship/<int:pk>", methods=["GET", "POST"])
    @has_access
    @permission_name("ship")
    def ship(self, pk: int):
        parcel = get_scoped(m.Shipment, pk)
        if parcel is None:
            abort(404)
        if request.method == "POST" and attempt(
                lambda: delivery.ship_parcel(current_actor(), pk, request.form.get("carrier"),
                                             request.form.get("tracking_no")),
                _("The parcel is on its way.")):
            return redirect(url_for("ParcelView.list"))
        return self.render_template("ciie/badges/ship.html", parcel=parcel,
                                    carrier=request.form.get("carrier", ""),
                                    tracking_no=request.form.get("tracking_no", ""))

    @batch_action("deliver_parcels", _l("Delivered"),
                  _l("The parcels and their badges are marked delivered."), "fa-check")
    def deliver_parcels(self, selection: Selection):
        return delivery.deliver_parcels(current_actor(), selection.ids)


class GateScanLogView(ScopedModelView):
    """Every scan at the gates: who, when, where and the result."""

    route_base = "/badges/scans"
    class_permission_name = "GateScans"
    datamodel = ScopedInterface(m.GateScan, [joinedload(m.GateScan.scanned_by)])
    title = _l("Gate scans")
    base_order = ("scanned_at", "desc")
    list_columns = ["scanned_at", "result", "badge.number", "badge.printed_name", "gate",
                    "scanned_by", "offline"]
    show_columns = list_columns
    search_columns = ["result", "scanned_at", "gate"]
    base_permissions = ["can_list", "can_show"]
    label_columns = BADGE_LABELS


class CurrentEditionBadges(BaseFilter):
    """The badges valid for the current edition: new ones and re-activated earlier ones."""

    name = "current edition"

    def apply(self, query: Any, value: Any) -> Any:
        PR = m.PersonRegistration
        return query.filter(m.Badge.id.in_(sa.select(PR.badge_id).where(
            PR.edition_id == current_edition_id())))


class UnitBadgeView(ScopedModelView):
    """Where the unit's badges are: number, person, status, parcel, carrier and tracking."""

    route_base = "/unit/badges"
    class_permission_name = "UnitBadges"
    datamodel = ScopedInterface(m.Badge)
    title = _l("Badges and delivery")
    base_filters = [["id", CurrentEditionBadges, None]]
    base_order = ("number", "asc")
    list_columns = ["number", "printed_name", "tag", "status", "active", "shipment",
                    "shipment.status", "shipment.carrier", "shipment.tracking_no",
                    "shipment.shipped_at"]
    show_columns = list_columns + ["parcel_slot", "shipment.address", "edition",
                                   "reactivated_for_edition"]
    search_columns = ["number", "printed_name", "status"]
    base_permissions = ["can_list", "can_show"]
    label_columns = BADGE_LABELS

