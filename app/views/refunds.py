"""The unit's refunds: ask for rejected or cancelled persons it paid for, follow each refund."""
from __future__ import annotations

import sqlalchemy as sa
from flask import flash, redirect, request, session, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from app import models as m
from app.extensions import db
from app.scoping.actor import WRITE, current_actor
from app.scoping.interface import ScopedInterface
from app.scoping.rules import row_id, scoped
from app.views.base import ScopedModelView, attempt, flash_batch_result
from app.workflow import refunds


def refundable_rows() -> list:
    """The unit's rejected or cancelled persons in paid orders, not being refunded yet."""
    PR, OI = m.PersonRegistration, m.OrderItem
    being_refunded = sa.select(m.RefundItem.order_item_id).where(m.RefundItem.active.is_(True))
    return db.session.execute(scoped(
        sa.select(PR.id, PR.status, m.Person.name, OI.amount_fen, m.Order.number,
                  m.Payment.channel)
        .join(m.Person, m.Person.id == PR.person_id)
        .join(OI, sa.and_(OI.person_registration_id == PR.id, OI.active.is_(True)))
        .join(m.Order, sa.and_(m.Order.id == OI.order_id, m.Order.status == m.OrderStatus.paid))
        .join(m.Payment, sa.and_(m.Payment.order_id == m.Order.id,
                                 m.Payment.status == m.PaymentStatus.confirmed))
        .where(PR.status.in_(refunds.REFUNDABLE), OI.id.not_in(being_refunded))
        .order_by(m.Order.number, m.Person.name), PR, current_actor(), WRITE)).all()


class UnitRefundView(ScopedModelView):
    route_base = "/unit/refunds"
    class_permission_name = "UnitRefunds"
    datamodel = ScopedInterface(m.Refund)
    title = _l("Refunds")
    list_template = "ciie/unit/refunds.html"
    base_order = ("id", "desc")
    list_columns = ["number", "payment.number", "route", "amount_fen", "status", "reason",
                    "created_at", "done_at"]
    show_columns = list_columns + ["account_name", "account_bank", "account_no"]
    search_columns = ["status"]
    base_permissions = ["can_list", "can_show", "can_request"]
    label_columns = {"payment.number": _l("Payment record"), "done_at": _l("Refunded at")}

    def _list(self, **kwargs):
        widgets = super()._list(**kwargs)
        widgets["refundable"] = refundable_rows()
        # What the unit chose in a request that was refused, to choose again from.
        widgets["refund_form"] = session.pop("refund_form", None) or {}
        return widgets

    @expose("/request", methods=["POST"])
    @has_access
    @permission_name("request")
    def request_refund(self):
        form = request.form
        ids = [i for i in (row_id(m.PersonRegistration, v) for v in form.getlist("person"))
               if i is not None]
        route = form.get("route", m.RefundRoute.original.value)
        if route not in m.RefundRoute.__members__:
            route = m.RefundRoute.original.value
        outcome = []
        if attempt(lambda: outcome.append(refunds.request_refunds(
                current_actor(), ids, m.RefundRoute(route), form.get("account_name"),
                form.get("account_bank"), form.get("account_no")))):
            # The persons refunded, and each refused one with its order and reason.
            flash_batch_result(outcome[0])
            if outcome[0].done:
                flash(_("Your refund request was sent to finance."), "success")
        if not outcome or outcome[0].refused:
            # Nothing the unit chose is lost: the list shows the refused choice again.
            session["refund_form"] = {
                "person": ids[:500], "route": route,
                **{k: (form.get(k) or "")[:200] for k in ("account_name", "account_bank",
                                                         "account_no")}}
        return redirect(url_for("UnitRefundView.list"))
