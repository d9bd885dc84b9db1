"""The event organiser's dashboard: its own supporting events and the applications to them."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l

from app import models as m
from app.scoping.actor import current_actor
from app.scoping.interface import ScopedInterface, Selection
from app.views.base import ScopedModelView, batch_action
from app.workflow import events
from app.workflow.errors import WorkflowError


class OrganiserEventView(ScopedModelView):
    route_base = "/organiser/events"
    class_permission_name = "OrganiserEvents"
    datamodel = ScopedInterface(m.Event)
    title = _l("Supporting events")
    base_order = ("starts_at", "asc")
    list_columns = ["title_zh", "title_en", "starts_at", "place", "capacity", "seats_taken",
                    "open_to_visitors", "status"]
    show_columns = ["title_zh", "title_en", "description_zh", "description_en", "starts_at",
                    "ends_at", "place", "capacity", "seats_taken", "open_to_visitors", "status"]
    add_columns = edit_columns = ["title_zh", "title_en", "description_zh", "description_en",
                                  "starts_at", "ends_at", "place", "capacity",
                                  "open_to_visitors"]
    search_columns = ["status", "title_zh"]
    description_columns = {"starts_at": _l("Beijing time"), "ends_at": _l("Beijing time")}

    def pre_add(self, item: m.Event) -> None:
        actor = current_actor()
        if actor.organiser_id is None and not actor.is_admin:
            raise WorkflowError(_l("Only an event organiser can publish events."), 403)
        from app.workflow.editions import current_edition

        item.organiser_id = item.organiser_id or actor.organiser_id
        item.edition_id = current_edition().id
        item.status = m.EventStatus.draft
        item.seats_taken = 0
        events.check_event(item)

    def pre_update(self, item: m.Event) -> None:
        events.check_event(item)

    @batch_action("publish_events", _l("Publish"), None, "fa-bullhorn")
    def publish_events(self, selection: Selection):
        return events.publish_events(current_actor(), selection.ids)

    @batch_action("close_events", _l("Close"), None, "fa-lock")
    def close_events(self, selection: Selection):
        return events.close_events(current_actor(), selection.ids)


class OrganiserApplicationView(ScopedModelView):
    route_base = "/organiser/applications"
    class_permission_name = "OrganiserApplications"
    datamodel = ScopedInterface(m.EventApplication)
    title = _l("Applications")
    base_order = ("id", "desc")
    list_columns = ["event.title", "person_registration.person.name", "unit.name", "status",
                    "created_at"]
    show_columns = list_columns + ["decision_reason"]
    search_columns = ["status", "event"]
    base_permissions = ["can_list", "can_show"]
    reason_actions = ("decline_applications",)

    @batch_action("accept_applications", _l("Accept"), None, "fa-check")
    def accept_applications(self, selection: Selection):
        return events.decide_applications(current_actor(), selection.ids, accept=True)

    @batch_action("decline_applications", _l("Decline"), None, "fa-times")
    def decline_applications(self, selection: Selection):
        from flask import request

        return events.decide_applications(current_actor(), selection.ids, accept=False,
                                          reason=request.form.get("reason"))
