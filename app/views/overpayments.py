"""Finance's overpayments: money that arrived for an order already paid or cancelled (a second
online payment, a bank line for a paid order), each to be sent back: through its provider the
way it came, or by bank transfer with the transfer's reference. Only HTTP lives here: the
money rules are in app.workflow.payments."""
from __future__ import annotations

from flask import request
from flask_babel import lazy_gettext as _l

from app import models as m
from app.scoping.actor import current_actor
from app.scoping.interface import ScopedInterface, Selection
from app.views.base import ScopedModelView, batch_action
from app.workflow import payments


class FinanceOverpaymentView(ScopedModelView):
    """Every overpayment, the ones still to refund first."""

    route_base = "/finance/overpayments"
    class_permission_name = "FinanceOverpayments"
    datamodel = ScopedInterface(m.Overpayment)
    title = _l("Overpayments")
    base_order = ("id", "desc")
    list_columns = ["number", "order.number", "unit.name", "channel", "amount_fen", "cause",
                    "status", "reference", "payer_name", "created_at", "refund_reference",
                    "refunded_at"]
    show_columns = list_columns + ["payment.number", "payer_account", "refund_message"]
    search_columns = ["status", "channel", "number", "reference", "created_at"]
    base_permissions = ["can_list", "can_show"]
    label_columns = {"order.number": _l("Order"), "payment.number": _l("Payment record"),
                     "cause": _l("Why"), "reference": _l("Provider trade or bank reference"),
                     "refund_reference": _l("Refund reference"),
                     "refund_message": _l("Provider's answer"),
                     "refunded_at": _l("Refunded at")}
    reason_actions = {"refund_by_transfer": (
        _l("Reference of the bank transfer that paid the money back (the unit will see it):"),
        _l("Enter the transfer's reference."))}

    @batch_action("refund_online", _l("Refund through the provider"),
                  _l("The money goes back the way it came, through the payment provider."),
                  "fa-undo")
    def refund_online(self, selection: Selection):
        return payments.refund_overpayments(current_actor(), selection.id_list())

    @batch_action("refund_by_transfer", _l("Refunded by bank transfer"), None, "fa-university")
    def refund_by_transfer(self, selection: Selection):
        return payments.refund_overpayments_by_transfer(
            current_actor(), selection.id_list(), request.form.get("reason"))
