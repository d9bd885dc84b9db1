"""Where a unit stands in the journey: register → unit information → persons → delegation
review → tags and lock → payment → security review → badge."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask_babel import lazy_gettext as _l

from app import models as m
from app.workflow.unit_info import missing_for_submission, person_counts

PS = m.PersonStatus
DONE, CURRENT, TODO, ATTENTION = "done", "current", "todo", "attention"


@dataclass
class Step:
    key: str
    title: Any
    state: str
    endpoint: str
    args: dict


def progress(registration: m.UnitRegistration) -> list[Step]:
    counts = person_counts(registration.id)

    def n(*statuses: m.PersonStatus) -> int:
        return sum(counts.get(s, 0) for s in statuses)

    submitted = n(*[s for s in PS if s not in (PS.draft, PS.awaiting_unit, PS.cancelled)])
    past_lock = n(PS.awaiting_payment, PS.in_order, PS.awaiting_review, PS.approved,
                  PS.rejected, PS.badge_issued, PS.refunded)
    past_payment = n(PS.awaiting_review, PS.approved, PS.rejected, PS.badge_issued)
    reviewed = n(PS.approved, PS.rejected, PS.badge_issued)
    status = registration.status
    info_done = not missing_for_submission(registration) or status not in (
        m.UnitStatus.draft, m.UnitStatus.returned)

    def state(done: bool, started: bool, attention: bool = False) -> str:
        if attention:
            return ATTENTION
        return DONE if done else (CURRENT if started else TODO)

    return [
        Step("register", _l("Register"), DONE, "UnitInfoView.edit", {}),
        Step("info", _l("Unit information"), state(info_done, True,
                                                   status is m.UnitStatus.returned),
             "UnitInfoView.edit", {}),
        Step("persons", _l("Persons"), state(submitted > 0, info_done), "UnitPersonView.list",
             {}),
        Step("review", _l("Delegation review"),
             state(status is m.UnitStatus.approved, status is m.UnitStatus.submitted,
                   status in (m.UnitStatus.returned, m.UnitStatus.rejected)),
             "UnitPreviewView.show", {}),
        Step("lock", _l("Tags and lock"),
             state(past_lock > 0 and not n(PS.submitted, PS.awaiting_lock),
                   n(PS.submitted, PS.awaiting_lock) > 0 and status is m.UnitStatus.approved),
             "UnitPersonView.list", {"_flt_0_status": PS.awaiting_lock.value}),
        Step("payment", _l("Payment"),
             state(past_payment > 0 and not n(PS.awaiting_payment, PS.in_order),
                   n(PS.awaiting_payment, PS.in_order) > 0),
             "UnitOrderView.list", {}),
        Step("security", _l("Security review"),
             state(reviewed > 0 and not n(PS.awaiting_review), n(PS.awaiting_review) > 0),
             "UnitPersonView.list", {"_flt_0_status": PS.awaiting_review.value}),
        Step("badge", _l("Badge"), state(n(PS.badge_issued) > 0, n(PS.approved) > 0),
             "UnitBadgeView.list", {}),
    ]
