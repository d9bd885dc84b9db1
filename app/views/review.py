"""The security reviewer's queue: persons awaiting review, with only what a check needs."""
from __future__ import annotations

from flask_appbuilder.models.sqla.filters import FilterEqualFunction
from flask_babel import lazy_gettext as _l

from app import models as m
from app.views.base import ScopedInterface, ScopedModelView
from app.views.unit import current_edition_id


class ReviewQueueView(ScopedModelView):
    """No payment or invoice data here: name, gender, ID document, nationality, unit, tag."""

    route_base = "/review/queue"
    class_permission_name = "ReviewQueue"
    datamodel = ScopedInterface(m.PersonRegistration)
    title = _l("Security review queue")
    base_filters = [["edition_id", FilterEqualFunction, current_edition_id]]
    base_order = ("status_changed_at", "asc")
    list_columns = ["person.name", "person.gender", "person.id_type", "person.id_number",
                    "person.nationality", "unit_registration.unit.name",
                    "unit_registration.delegation", "tag", "status_changed_at"]
    show_columns = list_columns
    search_columns = ["tag"]
    base_permissions = ["can_list", "can_show"]
    label_columns = {"status_changed_at": _l("Waiting since")}
