"""Finance's dashboard: every order and payment (vouchers downloadable by finance only)."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l

from app import models as m
from app.views.base import ScopedInterface, ScopedModelView, download_link


class FinanceOrderView(ScopedModelView):
    route_base = "/finance/orders"
    class_permission_name = "FinanceOrders"
    datamodel = ScopedInterface(m.Order)
    title = _l("Orders")
    base_order = ("id", "desc")
    list_columns = ["number", "unit.name", "status", "fee_fen", "amount_fen", "created_at",
                    "paid_at"]
    show_columns = list_columns
    search_columns = ["number", "status", "created_at"]
    base_permissions = ["can_list", "can_show"]


class FinancePaymentView(ScopedModelView):
    route_base = "/finance/payments"
    class_permission_name = "FinancePayments"
    datamodel = ScopedInterface(m.Payment)
    title = _l("Payments")
    base_order = ("id", "desc")
    list_columns = ["number", "order.number", "channel", "status", "amount_fen", "refunded_fen",
                    "payer_name", "remitted_on", "voucher_key", "created_at"]
    show_columns = list_columns + ["payer_bank", "payer_account", "reject_reason",
                                   "confirmed_at"]
    search_columns = ["number", "channel", "status"]
    file_columns = ("voucher_key",)
    base_permissions = ["can_list", "can_show", "can_download"]
    formatters_columns = {"voucher_key": download_link("FinancePaymentView")}
