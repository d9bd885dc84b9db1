"""Online payment pages: the unit pays an order by QR code or B2B bank gateway; providers
notify us server to server. Only HTTP lives here: the money rules are in app.workflow.payments.

- `/unit/orders/pay/<order>`: the unit's payment page for one of its orders (scoped: another
  unit's order is a 404), choosing Alipay, WeChat Pay, UnionPay (QR) or B2B (bank page).
- `/unit/orders/pay/payment/<payment>`: the QR code (or the way back to the bank), polling the
  payment's status until it is confirmed.
- `POST /pay/notify/<channel>`: providers' notifications, public and exempt from CSRF (they
  are server to server; their signatures are the proof), answered as each provider expects.
"""
from __future__ import annotations

import logging

import segno
import sqlalchemy as sa
from flask import Request, Response, abort, current_app, flash, jsonify, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_babel import gettext as _

from app import models as m
from app.extensions import db
from app.gateways.payments import (
    GatewayError,
    InvalidNotification,
    PaymentGateway,
    gateway_for,
)
from app.scoping.actor import current_actor
from app.scoping.rules import get_scoped
from app.workflow.errors import WorkflowError
from app.workflow.payments import (
    NotificationOutcome,
    payment_refusal,
    settle_notification,
    start_online_payment,
)

log = logging.getLogger(__name__)

Ch = m.PaymentChannel
PayS = m.PaymentStatus
ONLINE_CHANNELS = (Ch.alipay, Ch.wechat, Ch.unionpay, Ch.b2b)


def channel_or_404(value: str, allowed: tuple[m.PaymentChannel, ...]) -> m.PaymentChannel:
    """The channel named in a URL or form, if it is one of `allowed`; else 404."""
    channel = m.PaymentChannel.__members__.get(value)
    if channel not in allowed:
        abort(404)
    return channel


def qr_image(content: str) -> str:
    """A QR code as an SVG data URI for an <img>."""
    return segno.make_qr(content, error="m").svg_data_uri(scale=5, border=2)


# --------------------------------------------------------------------------------------------
# Notifications
# --------------------------------------------------------------------------------------------

# How each outcome is logged: (level, message % (channel, payment, provider trade, amount)).
OUTCOME_LOG = {
    NotificationOutcome.confirmed: (logging.INFO, "%s payment %s confirmed (%s, %s fen)"),
    NotificationOutcome.already_confirmed: (
        logging.INFO, "%s notification for %s repeated; already confirmed (%s, %s fen)"),
    NotificationOutcome.overpaid: (
        logging.WARNING, "%s payment %s paid for an order already paid or cancelled: "
        "overpayment recorded for refund (%s, %s fen)"),
    NotificationOutcome.not_paid: (
        logging.INFO, "%s notification for %s reports no payment (%s, %s fen)"),
    NotificationOutcome.refused: (
        logging.WARNING, "%s notification refused: payment %s, provider trade %s, %s fen "
        "(unknown payment, other channel or amount, or not payable now)"),
}


def receive_notification(gateway: PaymentGateway, req: Request) -> Response:
    """Verify a provider's notification, let the workflow settle it, answer as the provider
    expects. Forged or altered notifications fail verification and are rejected; a refused
    one keeps the provider retrying while we look; every other outcome is acknowledged, so
    the provider stops. Every outcome is logged."""
    channel = gateway.channel
    try:
        note = gateway.verify_notification(req)
    except InvalidNotification as exc:
        log.warning("%s notification rejected (from %s): %s", channel.value, req.remote_addr,
                    exc)
        return gateway.reject()
    outcome = settle_notification(channel, note)
    level, message = OUTCOME_LOG[outcome]
    log.log(level, message, channel.value, note.payment_number, note.provider_trade_no,
            note.amount_fen)
    if outcome is NotificationOutcome.refused:
        return gateway.reject()
    return gateway.acknowledge()


class PaymentNotifyView(BaseView):
    """Providers' notifications. Public: the signature, not a login, says who is talking;
    exempt from CSRF in register_views (no browser is involved)."""

    route_base = "/pay"

    @expose("/notify/<string:channel>", methods=["POST"])
    def notify(self, channel: str):
        online = channel_or_404(channel, ONLINE_CHANNELS)
        try:
            gateway = gateway_for(online)
        except GatewayError:
            # Not configured: the provider gets an error and retries once we are.
            log.exception("no %s gateway to verify a notification with", online.value)
            abort(503)
        return receive_notification(gateway, request)

    @expose("/return/<int:payment_id>", methods=["GET", "POST"])
    def back_from_bank(self, payment_id: int):
        """Where UnionPay's B2B page sends the unit's browser back (frontUrl, a form post
        from UnionPay's site, hence here among the CSRF-exempt endpoints). It only leads to
        the payment's page: the signed notification, not this, says whether it was paid."""
        return redirect(url_for("UnitPaymentView.payment", payment_id=payment_id), code=303)


# --------------------------------------------------------------------------------------------
# The unit's pages
# --------------------------------------------------------------------------------------------

class UnitPaymentView(BaseView):
    """The unit pays its order online. Every page reads through the unit's scope."""

    route_base = "/unit/orders/pay"
    class_permission_name = "UnitPayments"

    @expose("/<int:order_id>")
    @has_access
    @permission_name("show")
    def order(self, order_id: int):
        order = get_scoped(m.Order, order_id)
        if order is None:
            abort(404)
        persons = db.session.scalars(
            sa.select(m.Person.name).join(m.PersonRegistration)
            .join(m.OrderItem, m.OrderItem.person_registration_id == m.PersonRegistration.id)
            .where(m.OrderItem.order_id == order.id, m.OrderItem.active.is_(True))
            .order_by(m.Person.name)).all()
        return self.render_template("ciie/pay/order.html", title=_("Pay the order"),
                                    order=order, persons=persons,
                                    refusal=payment_refusal(order), channels=ONLINE_CHANNELS)

    @expose("/<int:order_id>/start", methods=["POST"])
    @has_access
    @permission_name("pay")
    def start(self, order_id: int):
        channel = channel_or_404(request.form.get("channel", ""), ONLINE_CHANNELS)
        back = redirect(url_for(".order", order_id=order_id))
        try:
            payment = start_online_payment(current_actor(), order_id, channel)
        except WorkflowError as exc:
            db.session.rollback()
            if exc.status_code == 404:
                abort(404)
            flash(str(exc.message), "danger")
            return back
        return redirect(url_for(".payment", payment_id=payment.id))

    def _payment(self, payment_id: int) -> m.Payment:
        payment = get_scoped(m.Payment, payment_id)
        if payment is None or payment.channel not in ONLINE_CHANNELS:
            abort(404)
        return payment

    @expose("/payment/<int:payment_id>")
    @has_access
    @permission_name("show")
    def payment(self, payment_id: int):
        payment = self._payment(payment_id)
        order = payment.order
        created: dict[str, str] = {}
        # Past the deadline a code already shown may still be paid (and is then confirmed),
        # but no code is shown any more.
        failure = payment_refusal(order) if payment.status is PayS.pending else None
        if payment.status is PayS.pending and failure is None:
            try:
                created = gateway_for(payment.channel).create(payment, order)
            except GatewayError:
                log.exception("%s refused payment %s", payment.channel.value, payment.number)
                failure = _("The payment service could not be reached. Reload the page in a "
                            "moment or choose another way to pay.")
        qr_code = created.get("qr_code")
        return self.render_template(
            "ciie/pay/payment.html", title=_("Pay the order"), payment=payment, order=order,
            qr_code=qr_code, qr_image=qr_image(qr_code) if qr_code else None,
            bank_form=created if "form_action" in created else None, failure=failure,
            sandbox=current_app.config["PAYMENT_SANDBOX"])

    @expose("/payment/<int:payment_id>/status")
    @has_access
    @permission_name("show")
    def status(self, payment_id: int):
        payment = self._payment(payment_id)
        return jsonify({"status": payment.status.value, "label": str(payment.status.label),
                        "order_status": payment.order.status.value,
                        "paid": payment.status is PayS.confirmed})
