"""The security reviewer's queue: persons awaiting review, with only what a check needs."""
from __future__ import annotations

from flask_appbuilder.models.sqla.filters import FilterEqualFunction
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from app import models as m
from app.scoping.interface import ScopedInterface, Selection
from app.views.base import ScopedModelView, batch_action
from app.views.unit import current_edition_id, photo_result, thumbnail


def fmt_waiting(waiting: tuple[int, int] | None) -> Markup:
    """"3 / 7 days", red once the usual time is over."""
    if not waiting:
        return Markup("")
    days, usual = waiting
    css = "text-danger" if days > usual else "text-muted"
    return Markup('<span class="{}">{}</span>').format(
        css, _("%(days)d / %(usual)d days", days=days, usual=usual))


def _fail_action(reason: m.ReviewReason):
    name = f"fail_review_{reason.value}"

    @batch_action(name, _l("Fail: %(reason)s", reason=reason.label), None, "fa-times")
    def fail(self, selection: Selection):
        return self.run_operation(name, selection)

    fail.__name__ = name
    return fail


class ReviewQueueView(ScopedModelView):
    """No payment or invoice data here: name, gender, ID document, nationality, photo (with its
    upload check), unit, delegation and tag; how long each has waited against the usual 7
    (mainland) or 15 days."""

    route_base = "/review/queue"
    class_permission_name = "ReviewQueue"
    datamodel = ScopedInterface(m.PersonRegistration)
    title = _l("Security review queue")
    base_filters = [["edition_id", FilterEqualFunction, current_edition_id]]
    base_order = ("status_changed_at", "asc")
    list_columns = ["photo", "photo_result", "person.name", "person.gender", "person.id_type",
                    "person.id_number", "person.nationality", "unit_registration.unit.name",
                    "unit_registration.delegation", "tag", "waiting"]
    show_columns = list_columns + ["status_changed_at"]
    # The reviewer sees no mobile numbers, so it cannot search by one either.
    search_columns = ["tag", "delegation_name", "unit_region", "status_changed_at",
                      "person_name", "person_id_search"]
    base_permissions = ["can_list", "can_show"]
    label_columns = {"status_changed_at": _l("Waiting since"), "waiting": _l("Waited"),
                     "delegation_name": _l("Delegation")}
    formatters_columns = {"photo": thumbnail, "photo_result": photo_result,
                          "waiting": fmt_waiting}

    @batch_action("pass_review", _l("Pass"),
                  _l("Passed persons go to badge production."), "fa-check")
    def pass_review(self, selection: Selection):
        return self.run_operation("pass_review", selection)

    # One fail action per reason code, so the reason is always one of the defined codes.
    for _reason in m.ReviewReason:
        locals()[f"fail_review_{_reason.value}"] = _fail_action(_reason)
    del _reason
