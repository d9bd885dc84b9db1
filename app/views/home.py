"""The home page: after login each role sees what is waiting for it, counted in its own scope."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

import sqlalchemy as sa
from flask import redirect, url_for
from flask_appbuilder import IndexView, expose
from flask_babel import lazy_gettext as _l

from app import models as m
from app.clock import SHANGHAI, today_shanghai
from app.extensions import db
from app.scoping.actor import (
    ADMIN,
    DELEGATION,
    FINANCE,
    GATE,
    ORGANISER,
    PERSON,
    REVIEWER,
    SUB_DELEGATION,
    UNIT,
    Actor,
    current_actor,
)
from app.scoping.rules import scoped
from app.views.badges import QUEUE_TABS
from app.workflow.badges import queue_counts
from app.workflow.editions import current_edition, delegation_deadline
from app.workflow.errors import WorkflowError
from app.workflow.progress import progress
from app.workflow.units import own_delegation_id


@dataclass
class Panel:
    """One box on the home page: a title and (label, count, link) rows."""

    title: Any
    rows: list[tuple[Any, int, str | None]] = field(default_factory=list)
    note: Any = None
    steps: list = field(default_factory=list)


def count_by_status(model: type, actor: Actor, *where: Any) -> dict[Any, int]:
    """One scoped GROUP BY: {status: count}."""
    stmt = scoped(sa.select(model.status, sa.func.count()).where(*where).group_by(model.status),
                  model, actor)
    return dict(db.session.execute(stmt).all())


def status_rows(counts: dict[Any, int], enum_cls: type, endpoint: str | None,
                only_nonzero: bool = True) -> list[tuple[Any, int, str | None]]:
    rows = []
    for status in enum_cls:
        n = counts.get(status, 0)
        if only_nonzero and not n:
            continue
        link = url_for(f"{endpoint}.list", _flt_0_status=status.value) if endpoint else None
        rows.append((status.label, n, link))
    return rows


def _persons_panel(actor: Actor, edition: m.Edition, endpoint: str | None) -> Panel:
    PR = m.PersonRegistration
    counts = count_by_status(PR, actor, PR.edition_id == edition.id)
    return Panel(_l("Persons by status"), status_rows(counts, m.PersonStatus, endpoint))


def _units_panel(actor: Actor, edition: m.Edition, endpoint: str | None) -> Panel:
    UR = m.UnitRegistration
    counts = count_by_status(UR, actor, UR.edition_id == edition.id)
    return Panel(_l("Units by status"), status_rows(counts, m.UnitStatus, endpoint))


def panels_for(actor: Actor) -> list[Panel]:
    edition = current_edition()
    panels: list[Panel] = []
    if actor.has(UNIT) and actor.unit_id:
        registration = db.session.scalars(sa.select(m.UnitRegistration).where(
            m.UnitRegistration.edition_id == edition.id,
            m.UnitRegistration.unit_id == actor.unit_id)).one_or_none()
        panel = Panel(_l("Your unit's registration"))
        if registration is None:
            panel.note = _l("Your unit has not registered for this edition yet.")
        else:
            panel.steps = progress(registration)
            panel.rows.append((registration.status.label, 1, None))
            if registration.unit_number:
                panel.note = _l("Unit number: %(number)s", number=registration.unit_number)
            elif registration.review_reason:
                panel.note = _l("Reason given by the delegation: %(reason)s",
                                reason=registration.review_reason)
        panels.append(panel)
        panels.append(_persons_panel(actor, edition, "UnitPersonView"))
        orders = count_by_status(m.Order, actor, m.Order.edition_id == edition.id)
        panels.append(Panel(_l("Badge-fee orders"),
                            status_rows(orders, m.OrderStatus, "UnitOrderView")))
        invoices = count_by_status(m.Invoice, actor)
        if invoices:
            panels.append(Panel(_l("Invoices"),
                                status_rows(invoices, m.InvoiceStatus, "UnitInvoiceView")))
    if actor.has(DELEGATION, SUB_DELEGATION) and actor.is_delegation:
        panels.append(_units_panel(actor, edition, "DelegationUnitView"))
        panels.append(_persons_panel(actor, edition, "DelegationPersonView"))
    if actor.has(FINANCE):
        orders = count_by_status(m.Order, actor, m.Order.edition_id == edition.id)
        panels.append(Panel(_l("Badge-fee orders"),
                            status_rows(orders, m.OrderStatus, "FinanceOrderView")))
        payments = count_by_status(m.Payment, actor)
        panels.append(Panel(_l("Payments"),
                            status_rows(payments, m.PaymentStatus, "FinancePaymentView")))
        invoices = count_by_status(m.Invoice, actor)
        panels.append(Panel(_l("Invoices"), status_rows(invoices, m.InvoiceStatus,
                                                       "FinanceInvoiceView")))
        refunds = count_by_status(m.Refund, actor)
        panels.append(Panel(_l("Refunds"), status_rows(refunds, m.RefundStatus, None)))
        # Money paid twice, to be returned (issue 12): shown while there is any.
        overpaid = count_by_status(m.Overpayment, actor)
        if overpaid:
            panels.append(Panel(_l("Overpayments"), status_rows(
                overpaid, m.OverpaymentStatus, "FinanceOverpaymentView")))
    if actor.has(REVIEWER):
        PR = m.PersonRegistration
        waiting = db.session.scalar(scoped(
            sa.select(sa.func.count()).select_from(PR).where(
                PR.edition_id == edition.id, PR.status == m.PersonStatus.awaiting_review),
            PR, actor))
        panels.append(Panel(_l("Security review queue"), [
            (m.PersonStatus.awaiting_review.label, waiting, url_for("ReviewQueueView.list"))]))
    if actor.has(ORGANISER) and actor.organiser_id:
        events = count_by_status(m.Event, actor, m.Event.edition_id == edition.id)
        panels.append(Panel(_l("Your events"),
                            status_rows(events, m.EventStatus, "OrganiserEventView")))
        applications = count_by_status(m.EventApplication, actor)
        panels.append(Panel(_l("Applications to your events"),
                            status_rows(applications, m.ApplicationStatus,
                                        "OrganiserApplicationView")))
    if actor.has(GATE):
        start = datetime.combine(today_shanghai(), time(), tzinfo=SHANGHAI)
        scans = db.session.scalar(scoped(
            sa.select(sa.func.count()).select_from(m.GateScan)
            .where(m.GateScan.scanned_at >= start), m.GateScan, actor))
        panels.append(Panel(_l("Gate"), [(_l("Your scans today"), scans,
                                          url_for("GateView.scan"))]))
    if actor.has(PERSON):
        panels.append(_persons_panel(actor, edition, None))
    if actor.has(ADMIN):
        panels.append(_units_panel(actor, edition, "UnitAdminView"))
        panels.append(_persons_panel(actor, edition, None))
        # The badge office's queues, each count leading to its tab (one statement).
        counts = queue_counts(actor, edition.id)
        panels.append(Panel(_l("Badge office queue"), [
            (label, counts[key], url_for(f"{view}.list")) for view, key, label in QUEUE_TABS]))
    return panels


class HomeView(IndexView):
    index_template = "ciie/home.html"

    @expose("/")
    def index(self):
        actor = current_actor()
        if actor.user_id is None:
            return redirect(url_for(self.appbuilder.sm.auth_view.__class__.__name__ + ".login"))
        deadline = None
        try:
            edition = current_edition()
            panels = panels_for(actor)
            # The deadline this account works to: its delegation's, extension included.
            deadline = delegation_deadline(edition, own_delegation_id(actor))
        except WorkflowError as exc:
            edition, panels = None, [Panel(exc.message)]
        self.update_redirect()
        return self.render_template(self.index_template, appbuilder=self.appbuilder,
                                    edition=edition, panels=panels, actor=actor,
                                    deadline=deadline)
