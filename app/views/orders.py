"""The unit's badge-fee orders: the order page (items, payments, cancel) and the bank transfer
declaration with its voucher; the voucher is served only to the unit and finance."""
from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa
from flask import abort, current_app, redirect, request, send_from_directory, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_babel import gettext as _

from app import models as m
from app.extensions import db
from app.scoping.actor import current_actor
from app.scoping.rules import get_scoped, scoped
from app.views.base import attempt
from app.workflow import payments


def _order(order_id: int) -> m.Order:
    order = get_scoped(m.Order, order_id)
    if order is None:
        abort(404)
    return order


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


class UnitOrderPageView(BaseView):
    """One order as its unit sees it, with what can be done with it."""

    route_base = "/unit/order"
    class_permission_name = "UnitOrderPage"

    @expose("/<int:order_id>")
    @has_access
    @permission_name("show")
    def show(self, order_id: int):
        order = _order(order_id)
        items = db.session.execute(
            sa.select(m.OrderItem, m.Person.name, m.PersonRegistration.status)
            .join(m.PersonRegistration,
                  m.PersonRegistration.id == m.OrderItem.person_registration_id)
            .join(m.Person, m.Person.id == m.PersonRegistration.person_id)
            .where(m.OrderItem.order_id == order.id).order_by(m.Person.name)).all()
        attempts = db.session.scalars(sa.select(m.Payment).where(
            m.Payment.order_id == order.id).order_by(m.Payment.id.desc())).all()
        # Money that arrived twice (or for the cancelled order), as the unit may read it.
        overpayments = db.session.scalars(scoped(sa.select(m.Overpayment).where(
            m.Overpayment.order_id == order.id), m.Overpayment)
            .order_by(m.Overpayment.id)).all()
        return self.render_template(
            "ciie/unit/order.html", order=order, items=items, attempts=attempts,
            channels=[c for c in m.PaymentChannel if c is not m.PaymentChannel.transfer],
            waiting=payments.waiting_transfer(order), overpayments=overpayments,
            today=date.today().isoformat())

    @expose("/number/<string:number>")
    @has_access
    @permission_name("show")
    def by_number(self, number: str):
        order_id = db.session.scalar(scoped(sa.select(m.Order.id).where(
            m.Order.number == number), m.Order))
        if order_id is None:
            abort(404)
        return redirect(url_for("UnitOrderPageView.show", order_id=order_id))

    @expose("/<int:order_id>/cancel", methods=["POST"])
    @has_access
    @permission_name("cancel")
    def cancel(self, order_id: int):
        attempt(lambda: payments.cancel_order(current_actor(), order_id),
                _("The order was cancelled; its persons wait for payment again."))
        return redirect(url_for("UnitOrderPageView.show", order_id=order_id))

    @expose("/<int:order_id>/transfer", methods=["POST"])
    @has_access
    @permission_name("pay")
    def transfer(self, order_id: int):
        form: dict[str, Any] = request.form
        attempt(lambda: payments.submit_transfer(
            current_actor(), order_id, form.get("payer_name", ""),
            form.get("payer_account", ""), form.get("payer_bank", ""),
            _date(form.get("remitted_on")), request.files.get("voucher"),
            form.get("payer_tax_id")),
            _("Your transfer was declared; finance will check the voucher."))
        return redirect(url_for("UnitOrderPageView.show", order_id=order_id))

    @expose("/<int:order_id>/transfer/<int:payment_id>/withdraw", methods=["POST"])
    @has_access
    @permission_name("pay")
    def withdraw_transfer(self, order_id: int, payment_id: int):
        attempt(lambda: payments.withdraw_transfer(current_actor(), order_id, payment_id),
                _("Your transfer declaration was withdrawn. Declare it again or pay another "
                  "way."))
        return redirect(url_for("UnitOrderPageView.show", order_id=order_id))

    @expose("/voucher/<int:payment_id>")
    @has_access
    @permission_name("show")
    def voucher(self, payment_id: int):
        payment = get_scoped(m.Payment, payment_id)
        if payment is None or not payment.voucher_key:
            abort(404)
        return send_from_directory(current_app.config["UPLOAD_FOLDER"], payment.voucher_key)
