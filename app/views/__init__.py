"""One module per stakeholder; register_views puts each view in its role's menu."""
from __future__ import annotations

from flask import g
from flask_appbuilder import AppBuilder
from flask_babel import lazy_gettext as _l

from app.extensions import csrf
from app.scoping.actor import current_actor
from app.views import (
    admin,
    badges,
    bank_profiles,
    delegation,
    events,
    finance,
    gate,
    invoices,
    journey,
    orders,
    overpayments,
    payments,
    person_import,
    refunds,
    registration,
    review,
    tasks,
    unit,
)
from app.workflow.editions import current_edition
from app.workflow.errors import WorkflowError
from app.workflow.persons import unit_registration_for


def _acts_for_unit() -> bool:
    return current_actor().unit_id is not None


def _registered_this_edition() -> bool:
    """The unit's information, preview and earlier persons need its registration for the
    current edition (a returning unit registers afresh first); asked once per request."""
    if "ciie_registered_now" not in g:
        try:
            g.ciie_registered_now = bool(unit_registration_for(current_actor(),
                                                               current_edition()))
        except WorkflowError:
            g.ciie_registered_now = False
    return g.ciie_registered_now


def register_views(appbuilder: AppBuilder) -> None:
    def add(view, name, label, icon, category, category_label, category_icon, cond=None):
        appbuilder.add_view(view, name, label=label, icon=icon, category=category,
                            category_label=category_label, category_icon=category_icon,
                            menu_cond=cond)

    public = appbuilder.add_view_no_menu(registration.RegistrationView)
    # The public forms answer anyone: limit how fast one address can post them.
    appbuilder.sm.limiter.limit("30 per minute", methods=["POST"])(public.blueprint)

    # The unit's own pages: shown to a unit account only (FAB gives the admin role every
    # permission, these pages included, but they answer a unit and no one else).
    journey_menu = ("Registration", _l("Registration"), "fa-id-card", _acts_for_unit)
    registered = (*journey_menu[:3], _registered_this_edition)
    add(journey.UnitInfoView, "Unit information", _l("Unit information"), "fa-building",
        *registered)
    add(unit.UnitPersonView, "Unit persons", _l("Persons"), "fa-users", *journey_menu)
    add(person_import.PersonImportView, "Import persons", _l("Import persons"), "fa-upload",
        *registered)
    add(journey.UnitCarryForwardView, "Earlier persons", _l("Persons from earlier editions"),
        "fa-history", *registered)
    add(unit.UnitDocumentView, "Unit documents", _l("Qualification documents"), "fa-file",
        *journey_menu)
    add(unit.AddressView, "Addresses", _l("Delivery addresses"), "fa-truck", *journey_menu)
    add(journey.UnitPreviewView, "Preview and submit", _l("Preview and submit"), "fa-check",
        *registered)
    add(unit.UnitOrderView, "Unit orders", _l("Badge-fee orders"), "fa-shopping-cart",
        *journey_menu)
    add(refunds.UnitRefundView, "Unit refunds", _l("Refunds"), "fa-undo", *journey_menu)
    add(invoices.UnitInvoiceView, "Unit invoices", _l("Invoices"), "fa-file-text",
        *journey_menu)
    add(unit.UnitEventView, "Unit events", _l("Supporting events"), "fa-calendar",
        *journey_menu)
    add(unit.UnitApplicationView, "Unit applications", _l("Event applications"), "fa-inbox",
        *journey_menu)
    add(badges.UnitBadgeView, "Unit badges", _l("Badges and delivery"), "fa-id-badge",
        *journey_menu)
    appbuilder.add_view_no_menu(journey.PersonFileView)
    appbuilder.add_view_no_menu(orders.UnitOrderPageView)
    appbuilder.add_view_no_menu(tasks.TaskView)
    appbuilder.add_view_no_menu(payments.UnitPaymentView)
    # Providers post notifications server to server: no browser, no CSRF token; their
    # signatures are checked instead. Only this view's blueprint is exempt.
    notify = appbuilder.add_view_no_menu(payments.PaymentNotifyView)
    csrf.exempt(notify.blueprint)

    deleg = ("Delegation", _l("Delegation"), "fa-sitemap")
    add(delegation.DelegationUnitView, "Delegation units", _l("Units"), "fa-building", *deleg)
    add(delegation.DelegationPersonView, "Delegation persons", _l("Persons"), "fa-users",
        *deleg)
    add(delegation.DelegationClaimView, "Delegation claims", _l("Requests to register afresh"),
        "fa-user-lock", *deleg)
    add(delegation.DelegationStatsView, "Delegation statistics", _l("Statistics"),
        "fa-chart-bar", *deleg)
    appbuilder.add_view_no_menu(delegation.DelegationDocumentView)

    money = ("Finance", _l("Finance"), "fa-yen-sign")
    add(finance.FinanceOrderView, "Finance orders", _l("Orders"), "fa-list", *money)
    add(finance.FinancePaymentView, "Payments", _l("Payments"), "fa-credit-card", *money)
    add(finance.FinanceTransferView, "Bank transfers", _l("Bank transfers"), "fa-university",
        *money)
    add(finance.BankStatementView, "Bank statements", _l("Bank statements"), "fa-file-text",
        *money)
    add(finance.BankStatementImportView, "Statement imports", _l("Statement imports"),
        "fa-upload", *money)
    add(finance.FinanceRefundView, "Finance refunds", _l("Refunds"), "fa-undo", *money)
    add(overpayments.FinanceOverpaymentView, "Overpayments", _l("Overpayments"),
        "fa-exchange", *money)
    add(finance.FinanceNotificationView, "Failed notifications", _l("Failed notifications"),
        "fa-envelope", *money)
    add(finance.ReconciliationView, "Reconciliation", _l("Daily reconciliation"),
        "fa-balance-scale", *money)
    add(invoices.FinanceInvoiceView, "Finance invoices", _l("Invoices"), "fa-file-text",
        *money)

    reviewing = ("Security review", _l("Security review"), "fa-user-shield")
    add(review.ReviewQueueView, "Review queue", _l("Review queue"), "fa-list-check",
        *reviewing)

    badge_office = ("Badges", _l("Badges"), "fa-id-badge")
    add(badges.BadgeProductionView, "Badge production", _l("Badge queue"), "fa-print",
        *badge_office)
    # The queue's other tabs, reached from its first one and from the home page.
    for queue_tab in (badges.ReactivationQueueView, badges.ReprintQueueView,
                      badges.PackingQueueView):
        appbuilder.add_view_no_menu(queue_tab)
    add(badges.BadgeView, "All badges", _l("All badges"), "fa-id-badge", *badge_office)
    add(badges.ParcelView, "Parcels", _l("Parcels"), "fa-truck", *badge_office)
    add(badges.GateScanLogView, "Gate scans", _l("Gate scans"), "fa-history", *badge_office)

    gate_menu = ("Gate", _l("Gate"), "fa-qrcode")
    add(gate.GateView, "Gate scan", _l("Badge check"), "fa-qrcode", *gate_menu)

    organising = ("Events", _l("Supporting events"), "fa-calendar")
    add(events.OrganiserEventView, "Organiser events", _l("My events"), "fa-calendar",
        *organising)
    add(events.OrganiserApplicationView, "Applications", _l("Applications"), "fa-inbox",
        *organising)

    administration = ("Administration", _l("Administration"), "fa-cogs")
    add(admin.EditionView, "Editions", _l("Editions"), "fa-calendar", *administration)
    add(admin.DelegationView, "Delegations", _l("Delegations"), "fa-sitemap", *administration)
    add(admin.DelegationExtensionView, "Extensions", _l("Deadline extensions"), "fa-clock",
        *administration)
    add(admin.ExhibitionAreaView, "Exhibition areas", _l("Exhibition areas"), "fa-th-large",
        *administration)
    add(admin.ZoneView, "Zones", _l("Zones"), "fa-tags", *administration)
    add(admin.ReferralCodeView, "Referral codes", _l("Referral codes"), "fa-ticket",
        *administration)
    add(admin.OrganiserView, "Organisers", _l("Event organisers"), "fa-building",
        *administration)
    add(admin.UnitAdminView, "All units", _l("Units"), "fa-building", *administration)
    add(bank_profiles.BankStatementProfileView, "Bank statement layouts",
        _l("Bank statement layouts"), "fa-university", *administration)
    add(admin.AuditEventView, "Audit log", _l("Audit log"), "fa-history", *administration)
    add(admin.NotificationView, "Notification log", _l("Notification log"), "fa-envelope",
        *administration)
    add(admin.ProvidersView, "Providers", _l("Outside services"), "fa-plug", *administration)
