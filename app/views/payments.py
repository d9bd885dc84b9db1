"""Online payment pages: the unit pays an order by QR code or B2B bank gateway; providers
notify us server to server; the local sandbox's pages stand for the providers' sites.

- `/unit/orders/pay/<order>`: the unit's payment page for one of its orders (scoped: another
  unit's order is a 404), choosing Alipay, WeChat Pay, UnionPay (QR) or B2B (bank page).
- `/unit/orders/pay/payment/<payment>`: the QR code (or the way back to the bank), polling the
  payment's status until it is confirmed.
- `POST /pay/notify/<channel>`: providers' notifications, public and exempt from CSRF (they
  are server to server; their signatures are the proof), answered as each provider expects.
- `/sandbox/pay/...`: the sandbox's 'scan with your phone' and bank pages (no login; 404 when
  `PAYMENT_SANDBOX` is off).
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
from app.gateways.sandbox import PaymentSandbox, current_sandbox
from app.security import SYSTEM, current_actor, get_scoped
from app.workflow.audit import record
from app.workflow.errors import WorkflowError
from app.workflow.payments import (
    confirm_online_payment,
    require_payment_window,
    start_online_payment,
)

log = logging.getLogger(__name__)

Ch = m.PaymentChannel
PayS = m.PaymentStatus
OS = m.OrderStatus
ONLINE_CHANNELS = (Ch.alipay, Ch.wechat, Ch.unionpay, Ch.b2b)


def _channel(value: str, allowed: tuple[m.PaymentChannel, ...]) -> m.PaymentChannel:
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

def receive_notification(gateway: PaymentGateway, req: Request) -> Response:
    """Verify a provider's notification and confirm the payment it reports, once.

    Forged or altered notifications fail verification; a verified one that does not fit (an
    unknown payment, another channel, another amount, an order no longer payable) changes
    nothing and is refused, so a genuine problem keeps the provider retrying while we look;
    a replay of what is already confirmed is acknowledged, so the provider stops. Every
    refusal is logged; those naming one of our payments are also audited."""
    channel = gateway.channel
    try:
        note = gateway.verify_notification(req)
    except InvalidNotification as exc:
        log.warning("%s notification rejected (from %s): %s", channel.value, req.remote_addr,
                    exc)
        return gateway.reject()
    if not note.paid:
        log.info("%s notification for %s reports no payment", channel.value,
                 note.payment_number)
        return gateway.acknowledge()
    P = m.Payment
    # Columns only: loading the Payment here would let the session keep a stale status past
    # the row lock that confirm_online_payment takes.
    found_channel = db.session.scalar(sa.select(P.channel).where(
        P.number == note.payment_number))
    if found_channel is channel and confirm_online_payment(
            note.payment_number, note.provider_trade_no, note.amount_fen, SYSTEM):
        log.info("%s payment %s confirmed (%s)", channel.value, note.payment_number,
                 note.provider_trade_no)
        return gateway.acknowledge()
    db.session.rollback()
    payment = db.session.scalars(sa.select(P).where(P.number == note.payment_number)
                                 ).one_or_none()
    if payment is not None and payment.channel is channel \
            and payment.status is PayS.confirmed \
            and payment.provider_trade_no == note.provider_trade_no \
            and payment.amount_fen == note.amount_fen:
        log.info("%s notification for %s repeated; already confirmed", channel.value,
                 note.payment_number)
        return gateway.acknowledge()
    log.warning("%s notification refused: payment %s, provider trade %s, %s fen (unknown "
                "payment, other channel or amount, or not payable now)", channel.value,
                note.payment_number, note.provider_trade_no, note.amount_fen)
    if payment is not None:
        record(SYSTEM, "payment", payment.id, "notification_refused", detail={
            "channel": channel.value, "provider_trade_no": note.provider_trade_no,
            "amount_fen": note.amount_fen, "payment_status": payment.status.value,
            "order_status": payment.order.status.value})
        db.session.commit()
    return gateway.reject()


class PaymentNotifyView(BaseView):
    """Providers' notifications. Public: the signature, not a login, says who is talking;
    exempt from CSRF in register_views (no browser is involved)."""

    route_base = "/pay"

    @expose("/notify/<string:channel>", methods=["POST"])
    def notify(self, channel: str):
        online = _channel(channel, ONLINE_CHANNELS)
        try:
            gateway = gateway_for(online)
        except GatewayError:
            # Not configured: the provider gets an error and retries once we are.
            log.exception("no %s gateway to verify a notification with", online.value)
            abort(503)
        return receive_notification(gateway, request)


# --------------------------------------------------------------------------------------------
# The unit's pages
# --------------------------------------------------------------------------------------------

def payment_refusal(order: m.Order) -> str | None:
    """Why the order cannot be paid online now, in the reader's language (None: it can)."""
    if order.status is OS.paid:
        return _("This order is paid.")
    if order.status is not OS.pending:
        return _("This order is not waiting for payment.")
    try:
        require_payment_window(order.edition, Ch.alipay)
    except WorkflowError as exc:
        return str(exc.message)
    return None


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
        channel = _channel(request.form.get("channel", ""), ONLINE_CHANNELS)
        back = redirect(url_for(".order", order_id=order_id))
        try:
            payment = start_online_payment(current_actor(), order_id, channel)
        except WorkflowError as exc:
            db.session.rollback()
            if exc.status_code == 404:
                abort(404)
            flash(str(exc.message), "danger")
            return back
        if channel is not Ch.b2b:
            return redirect(url_for(".payment", payment_id=payment.id))
        try:
            target = gateway_for(channel).create(payment, payment.order)["redirect_url"]
        except GatewayError:
            log.exception("B2B gateway refused payment %s", payment.number)
            flash(_("The payment service could not be reached. Try again in a moment or "
                    "choose another way to pay."), "danger")
            return back
        return redirect(target)

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
            redirect_url=created.get("redirect_url"), failure=failure,
            sandbox=current_app.config["PAYMENT_SANDBOX"])

    @expose("/payment/<int:payment_id>/status")
    @has_access
    @permission_name("show")
    def status(self, payment_id: int):
        payment = self._payment(payment_id)
        return jsonify({"status": payment.status.value, "label": str(payment.status.label),
                        "order_status": payment.order.status.value,
                        "paid": payment.status is PayS.confirmed})


# --------------------------------------------------------------------------------------------
# The sandbox's pages (the providers' sites)
# --------------------------------------------------------------------------------------------

class PaymentSandboxView(BaseView):
    """What the payer sees at the provider, played by the sandbox. No login: a phone that
    scans the QR code has none. Absent (404) unless PAYMENT_SANDBOX is on."""

    route_base = "/sandbox/pay"

    @staticmethod
    def _sandbox() -> PaymentSandbox:
        if not current_app.config["PAYMENT_SANDBOX"]:
            abort(404)
        return current_sandbox()

    @expose("/qr/<string:channel>/<string:number>", methods=["GET", "POST"])
    def qr_page(self, channel: str, number: str):
        """'Scan with your phone': the QR code and the button that pays."""
        sandbox = self._sandbox()
        qr_channel = _channel(channel, m.QR_CHANNELS)
        answer = sandbox.pay(qr_channel, number) if request.method == "POST" else None
        trade = sandbox.ledger.trade(qr_channel, number)
        if trade is None:
            abort(404)
        return self.render_template("ciie/pay/sandbox_qr.html", title=_("Payment sandbox"),
                                    channel=qr_channel, trade=trade, answer=answer,
                                    qr_image=qr_image(request.base_url))

    @expose("/bank")
    def bank(self):
        """The bank's B2B page, opened with the merchant's signed parameters."""
        trade = self._sandbox().open_b2b(request.args)
        if trade is None:
            abort(400)
        return self.render_template("ciie/pay/sandbox_bank.html", title=_("Payment sandbox"),
                                    trade=trade, answer=None)

    @expose("/bank/<string:number>", methods=["POST"])
    def bank_pay(self, number: str):
        """Pay from the company account: notify the merchant, then go back to its page."""
        sandbox = self._sandbox()
        answer = sandbox.pay(Ch.b2b, number)
        trade = sandbox.ledger.trade(Ch.b2b, number)
        if answer is None or trade is None:
            abort(404)
        if answer.status == 200 and trade.return_url:
            return redirect(trade.return_url)
        return self.render_template("ciie/pay/sandbox_bank.html", title=_("Payment sandbox"),
                                    trade=trade, answer=answer)
