"""Badge-fee orders and their payments: a unit orders badges for persons awaiting payment and
pays by QR code, B2B gateway or bank transfer; a confirmed payment sends the persons to
security review. Money is integer fen; every confirmation is race-safe and idempotent."""
from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from app import models as m
from app import storage
from app.clock import SHANGHAI, now
from app.extensions import db
from app.formatting import fmt_money
from app.scoping.actor import SYSTEM, WRITE, Actor
from app.scoping.rules import get_scoped, scoped
from app.workflow.audit import record
from app.workflow.editions import current_edition
from app.workflow.errors import BatchResult, WorkflowError
from app.workflow.notices import (
    Notice,
    create_notices,
    enqueue_sends,
    finance_notices,
    render,
    send_after_commit,
    send_noted,
    unit_contacts,
    unit_notices,
)
from app.workflow.numbers import reserve
from app.workflow.persons import PERSON_MOVES, person_label
from app.workflow.transitions import Move, as_id_select, insert_guarded, move, table

if TYPE_CHECKING:
    from app.gateways.payments.base import VerifiedNotification

log = logging.getLogger(__name__)
PS = m.PersonStatus
OS = m.OrderStatus
PayS = m.PaymentStatus
Ch = m.PaymentChannel
PR = m.PersonRegistration
VOUCHER_TYPES = ("application/pdf", "image/jpeg", "image/png")

# The order's and the payment's state machines (docs/design.md, "States").
ORDER_MOVES = table({
    "paid": Move(from_={OS.pending}, to=OS.paid),
    "cancel": Move(from_={OS.pending}, to=OS.cancelled),
})
PAYMENT_MOVES = table({
    "confirm": Move(from_={PayS.pending}, to=PayS.confirmed),
    "statement_match": Move(from_={PayS.pending}, to=PayS.confirmed),
    # A withdrawn online attempt (the unit chose another way meanwhile) was still paid: the
    # money is real, so it pays the order if the order still waits.
    "notified": Move(from_={PayS.pending, PayS.withdrawn}, to=PayS.confirmed),
    "reject": Move(from_={PayS.pending}, to=PayS.rejected),
    "withdraw": Move(from_={PayS.pending}, to=PayS.withdrawn),
    # Money for an order already paid or cancelled: the attempt closes and its money is an
    # overpayment to refund (issue 12).
    "overpaid": Move(from_={PayS.pending}, to=PayS.withdrawn),
    # An open attempt gives way to one of another channel, or goes with its cancelled order.
    "superseded": Move(from_=set(m.OPEN_PAYMENT_STATUSES), to=PayS.withdrawn),
    "order_cancelled": Move(from_=set(m.OPEN_PAYMENT_STATUSES), to=PayS.withdrawn),
})


OvS = m.OverpaymentStatus
# Money paid twice, until it is back with the payer (docs/design.md, "States"; issue 12).
OVERPAYMENT_MOVES = table({
    # Back the way it came, through the provider; asked again after a failure or while the
    # provider still works on it (the overpayment's number is the refund's idempotency key).
    "refund": Move(from_={OvS.received, OvS.refund_sent, OvS.refund_failed}, to=OvS.refund_sent),
    "refund_done": Move(from_={OvS.refund_sent}, to=OvS.refunded),
    "refund_failed": Move(from_={OvS.refund_sent}, to=OvS.refund_failed),
    # Finance paid it back by bank transfer, with the transfer's reference.
    "refunded_by_transfer": Move(from_={OvS.received, OvS.refund_failed}, to=OvS.refunded),
})
ONLINE_CHANNELS = (Ch.alipay, Ch.wechat, Ch.unionpay, Ch.b2b)


def _local(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def require_payment_window(edition: m.Edition, channel: m.PaymentChannel) -> None:
    """Transfers with voucher by the transfer deadline; QR and B2B by the online deadline."""
    deadline = edition.transfer_deadline if channel is Ch.transfer else \
        edition.online_pay_deadline
    if now() > deadline:
        if channel is Ch.transfer:
            raise WorkflowError(_l("Bank transfers with their voucher were due by %(deadline)s "
                                   "(Beijing time); this way of paying is closed.",
                                   deadline=_local(deadline)))
        raise WorkflowError(_l("QR code and B2B payments were due by %(deadline)s (Beijing "
                               "time); paying is closed.", deadline=_local(deadline)))


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
    if waiting_transfer(order) is not None:
        return str(TRANSFER_WAITS)
    return None


# While a transfer declaration waits for finance the order takes no other way of paying.
TRANSFER_WAITS = _l("A bank transfer for this order is waiting for finance. Withdraw it on "
                    "the order's page to pay another way.")


def waiting_transfer(order: m.Order) -> m.Payment | None:
    """The order's transfer declaration waiting for finance, if any."""
    return db.session.scalars(sa.select(m.Payment).where(
        m.Payment.order_id == order.id, m.Payment.channel == Ch.transfer,
        m.Payment.status.in_(m.OPEN_PAYMENT_STATUSES)).order_by(m.Payment.id.desc())).first()


def _number(prefix: str, counter: str, edition: m.Edition) -> str:
    return f"{prefix}{edition.start_date.year}{reserve(counter, 1)[0]:06d}"


# --------------------------------------------------------------------------------------------
# Orders
# --------------------------------------------------------------------------------------------

def create_order(actor: Actor, registration_ids: Iterable[int]) -> m.Order:
    """Order badges for the unit's persons awaiting payment: fee × persons, fee as of now."""
    if actor.unit_id is None:
        raise WorkflowError(_l("Only a unit account can do this."), 403)
    edition = current_edition()
    require_payment_window(edition, Ch.alipay)
    ids = sorted({int(i) for i in registration_ids})
    if not ids:
        raise WorkflowError(_l("Choose the persons to order badges for."), 400)
    order = m.Order(number=_number("O", "order", edition), edition_id=edition.id,
                    unit_id=actor.unit_id, status=OS.pending, fee_fen=edition.badge_fee_fen,
                    amount_fen=0)
    db.session.add(order)
    db.session.flush()
    result = move(actor, PR, ids, PERSON_MOVES["order"], label=person_label(),
                  checks=[(PR.edition_id == edition.id, _l("not registered for this edition"))],
                  values={"status_changed_at": now()}, commit=False)
    if result.refused or len(result.done) != len(ids):
        db.session.rollback()
        reasons = "; ".join(f"{r.label}: {r.reason}" for r in result.refused) or \
            _("some persons are not yours")
        raise WorkflowError(_l("No order was made: %(reasons)s", reasons=reasons), 409)
    db.session.execute(sa.insert(m.OrderItem), [
        {"order_id": order.id, "person_registration_id": rid, "amount_fen": edition.badge_fee_fen,
         "active": True} for rid in result.done])
    order.amount_fen = edition.badge_fee_fen * len(result.done)
    record(actor, "order", order.id, "create", to_state=OS.pending,
           detail={"persons": len(result.done), "amount_fen": order.amount_fen})
    db.session.commit()
    return order


def cancel_order(actor: Actor, order_id: int) -> None:
    """Cancel an unpaid order: its persons wait for payment again."""
    order = get_scoped(m.Order, order_id, actor, WRITE)
    if order is None:
        raise WorkflowError(_l("No such order."), 404)
    if order.status not in ORDER_MOVES["cancel"].from_:
        raise WorkflowError(_l("Only an unpaid order can be cancelled."))
    under_review = db.session.scalar(sa.select(sa.func.count()).select_from(m.Payment).where(
        m.Payment.order_id == order.id, m.Payment.status == PayS.pending,
        m.Payment.channel == Ch.transfer))
    if under_review:
        raise WorkflowError(_l("Finance is checking a bank transfer for this order; it cannot "
                               "be cancelled now."))
    # Audited as "order", like its creation.
    cancelled = move(actor, m.Order, [order.id], ORDER_MOVES["cancel"], label=m.Order.number,
                     values={"cancelled_at": now()}, record_type="order", commit=False)
    if not cancelled.done:
        db.session.rollback()
        raise WorkflowError(_l("The order was paid or changed meanwhile; reload the page."))
    items = sa.select(m.OrderItem.person_registration_id).where(
        m.OrderItem.order_id == order.id, m.OrderItem.active.is_(True))
    move(actor, PR, items, PERSON_MOVES["order_cancelled"], label=person_label(),
         values={"status_changed_at": now()}, commit=False)
    db.session.execute(sa.update(m.OrderItem).where(m.OrderItem.order_id == order.id)
                       .values(active=False))
    # Open online attempts go with the order (audited like every move).
    step = PAYMENT_MOVES["order_cancelled"]
    move(actor, m.Payment, sa.select(m.Payment.id).where(
        m.Payment.order_id == order.id, m.Payment.status.in_(step.from_)),
        step, label=m.Payment.number, commit=False)
    db.session.commit()


# --------------------------------------------------------------------------------------------
# Payments
# --------------------------------------------------------------------------------------------

def _payable_order(actor: Actor, order_id: int, channel: m.PaymentChannel) -> m.Order:
    """The actor's pending order, its row locked: payment attempts on one order take turns."""
    order = get_scoped(m.Order, order_id, actor, WRITE)
    if order is None:
        raise WorkflowError(_l("No such order."), 404)
    db.session.execute(sa.select(m.Order.id).where(m.Order.id == order.id).with_for_update())
    db.session.refresh(order)
    if order.status not in ORDER_MOVES["paid"].from_:
        raise WorkflowError(_l("This order is not waiting for payment."))
    require_payment_window(order.edition, channel)
    return order


def _open_payment(order: m.Order) -> m.Payment | None:
    """The order's one open attempt (created or pending), if any."""
    return db.session.scalars(sa.select(m.Payment).where(
        m.Payment.order_id == order.id,
        m.Payment.status.in_(m.OPEN_PAYMENT_STATUSES))).first()


def _transfer_waiting(payment: m.Payment) -> WorkflowError:
    return WorkflowError(_l("A transfer for this order is already waiting for finance."))


def _supersede(actor: Actor, payment: m.Payment) -> None:
    move(actor, m.Payment, [payment.id], PAYMENT_MOVES["superseded"], label=m.Payment.number,
         commit=False)


def close_at_provider(payment_ids: Iterable[int]) -> None:
    """After the commit: close withdrawn online attempts at their provider, so that their QR
    code or bank page can no longer be paid, where the adapter can (an optional
    `close(payment)`). Best effort: money that still arrives is an overpayment."""
    from app.gateways.payments import GatewayError, gateway_for

    for payment in db.session.scalars(sa.select(m.Payment).where(
            m.Payment.id.in_(list(payment_ids)), m.Payment.channel.in_(ONLINE_CHANNELS),
            m.Payment.status == PayS.withdrawn)):
        try:
            close = getattr(gateway_for(payment.channel), "close", None)
            if callable(close):
                close(payment)
        except GatewayError:
            log.warning("%s could not close payment %s", payment.channel.value, payment.number,
                        exc_info=True)


def _add_payment(actor: Actor, payment: m.Payment, action: str, detail: dict | None = None
                 ) -> m.Payment:
    """Insert the attempt; the partial unique index is the last guard of one open attempt."""
    insert_guarded(payment, _l("Another payment for this order was started at the same "
                               "moment. Reload the page to see it."))
    record(actor, "payment", payment.id, action, to_state=payment.status, detail=detail)
    return payment


def start_online_payment(actor: Actor, order_id: int, channel: m.PaymentChannel
                         ) -> m.Payment:
    """The attempt to show for paying the order online by `channel`: the open one of that
    channel (same QR code, same bank order: paying a second one would pay twice), else a new
    one that replaces an open attempt of another online channel. A bank transfer waiting for
    finance must be withdrawn first."""
    channel = m.PaymentChannel(channel)
    if channel is Ch.transfer:
        raise WorkflowError(_l("A bank transfer is declared with its voucher."), 400)
    order = _payable_order(actor, order_id, channel)
    current = _open_payment(order)
    if current is not None and current.channel is Ch.transfer:
        raise WorkflowError(TRANSFER_WAITS)
    if current is not None and current.channel is channel \
            and current.amount_fen == order.amount_fen:
        db.session.commit()
        return current
    if current is not None:
        _supersede(actor, current)
    payment = _add_payment(actor, m.Payment(
        number=_number("P", "payment", order.edition), order_id=order.id, channel=channel,
        status=PayS.pending, amount_fen=order.amount_fen), "start",
        {"channel": channel.value, "amount_fen": order.amount_fen})
    db.session.commit()
    if current is not None:
        close_at_provider([current.id])
    return payment


def submit_transfer(actor: Actor, order_id: int, payer_name: str, payer_account: str,
                    payer_bank: str, remitted_on: date, voucher, payer_tax_id: str | None = None
                    ) -> m.Payment:
    """The unit declares its bank transfer with the voucher; finance checks it. An open online
    attempt is withdrawn (the unit chose to pay by transfer)."""
    if not (payer_name or "").strip() or not (payer_account or "").strip() \
            or not (payer_bank or "").strip():
        raise WorkflowError(_l("Enter the paying unit, its bank and its account."), 400)
    if remitted_on is None or remitted_on > now().astimezone(SHANGHAI).date():
        raise WorkflowError(_l("Enter the day the money was sent (not in the future)."), 400)
    data, _content_type, ext = storage.read_upload(
        voucher, current_app.config["MAX_DOCUMENT_BYTES"], VOUCHER_TYPES)
    order = _payable_order(actor, order_id, Ch.transfer)
    current = _open_payment(order)
    if current is not None and current.channel is Ch.transfer:
        raise _transfer_waiting(current)
    if current is not None:
        _supersede(actor, current)
    key = storage.store(data, ext)
    try:
        payment = _add_payment(actor, m.Payment(
            number=_number("P", "payment", order.edition), order_id=order.id,
            channel=Ch.transfer, status=PayS.pending, amount_fen=order.amount_fen,
            payer_name=payer_name.strip(), payer_account=payer_account.strip(),
            payer_bank=payer_bank.strip(), payer_tax_id=(payer_tax_id or "").strip() or None,
            remitted_on=remitted_on, voucher_key=key), "submit_transfer")
        db.session.commit()
    except Exception:
        storage.remove(key)  # no row holds the voucher: no orphan file either
        raise
    if current is not None:
        close_at_provider([current.id])
    return payment


def withdraw_transfer(actor: Actor, order_id: int, payment_id: int) -> None:
    """The unit takes back its transfer declaration before finance decided (to declare it
    again or pay another way)."""
    if actor.unit_id is None:
        raise WorkflowError(_l("Only a unit account can do this."), 403)
    payment = get_scoped(m.Payment, payment_id, actor, WRITE)
    if payment is None or payment.order_id != order_id or payment.channel is not Ch.transfer:
        raise WorkflowError(_l("No such order."), 404)
    result = move(actor, m.Payment, [payment.id], PAYMENT_MOVES["withdraw"],
                  label=m.Payment.number)
    if result.refused:
        raise WorkflowError(_l("This declaration cannot be withdrawn: %(reason)s.",
                               reason=result.refused[0].reason))
    if not result.done:
        raise WorkflowError(_l("No such order."), 404)


def confirm_payments(actor: Actor, payment_ids: sa.Select | list[int], step: Move,
                     provider_trade_no: str | None = None) -> BatchResult:
    """Confirm pending payments and everything that follows, set-based: payments confirmed,
    their orders paid, the orders' persons sent to security review, receipts queued. A payment
    whose order was paid meanwhile (or that is no longer pending) is refused, not doubled."""
    P = m.Payment
    id_select = as_id_select(P, payment_ids)
    label = P.number
    # An order can be paid once: the partial unique index refuses a second confirmed payment.
    result = move(actor, P, id_select, step, label=label,
                  checks=[(P.order_id.in_(sa.select(m.Order.id).where(
                      m.Order.status.in_(ORDER_MOVES["paid"].from_))),
                          _l("the order is already paid or cancelled"))],
                  values={"confirmed_at": now(),
                          **({"provider_trade_no": provider_trade_no}
                             if provider_trade_no else {})}, commit=False)
    if not result.done:
        return result
    order_ids = list(db.session.scalars(sa.select(P.order_id).where(P.id.in_(result.done))))
    # What follows from the confirmed payments is not the actor's to choose: system scope.
    orders = move(actor, m.Order, order_ids, ORDER_MOVES["paid"], label=m.Order.number,
                  values={"paid_at": now()},
                  commit=False, scope_actor=SYSTEM)
    persons = sa.select(m.OrderItem.person_registration_id).where(
        m.OrderItem.order_id.in_(orders.done), m.OrderItem.active.is_(True))
    move(actor, PR, persons, PERSON_MOVES["paid"], label=person_label(),
         values={"status_changed_at": now()}, commit=False, scope_actor=SYSTEM)
    # Another online attempt still open for a paid order gives way (its code must not be
    # paid too; if it is, the money is an overpayment). A transfer declaration stays with
    # finance: only finance knows whether that money arrived.
    if orders.done:
        step = PAYMENT_MOVES["superseded"]
        move(actor, P, sa.select(P.id).where(
            P.order_id.in_(orders.done), P.channel.in_(ONLINE_CHANNELS),
            P.status.in_(step.from_)), step, label=label, commit=False, scope_actor=SYSTEM)
    return result


def confirm_online_payment(payment_number: str, provider_trade_no: str, amount_fen: int,
                           actor: Actor) -> bool:
    """A verified provider notification: confirm the payment once. Returns False (and changes
    nothing) for an unknown payment, a wrong amount or a payment already settled, so replays
    and altered notifications are harmless. Two notifications at once confirm once."""
    # The order first, then the payment (the order the unit's requests lock them in): two
    # attempts of one order notified at once take turns, and the second finds the order paid.
    order_id = db.session.scalar(sa.select(m.Payment.order_id).where(
        m.Payment.number == payment_number))
    if order_id is not None:
        db.session.execute(sa.select(m.Order.id).where(m.Order.id == order_id)
                           .with_for_update())
    payment = db.session.scalars(sa.select(m.Payment).where(
        m.Payment.number == payment_number).with_for_update()).one_or_none()
    if payment is None or payment.channel is Ch.transfer:
        db.session.rollback()
        return False
    notified = PAYMENT_MOVES["notified"]
    if payment.status not in notified.from_ or payment.amount_fen != int(amount_fen):
        db.session.rollback()
        return False
    result = confirm_payments(actor, [payment.id], notified, provider_trade_no)
    if not result.done:
        db.session.rollback()
        return False
    withdrawn = list(db.session.scalars(sa.select(m.Payment.id).where(
        m.Payment.order_id == payment.order_id, m.Payment.id != payment.id,
        m.Payment.channel.in_(ONLINE_CHANNELS), m.Payment.status == PayS.withdrawn)))
    notification_ids = create_notices(receipt_notices([payment.id]))
    db.session.commit()
    enqueue_sends(notification_ids)
    close_at_provider(withdrawn)
    return True


class NotificationOutcome(enum.Enum):
    """What a verified provider notification did. All but `refused` tell the provider it was
    taken (so it stops sending); a refusal makes a genuine provider retry while we look."""

    confirmed = "confirmed"
    already_confirmed = "already_confirmed"  # a replay: the provider was not sure we got it
    # Money for an attempt of an order already paid or cancelled: an overpayment, recorded
    # once and queued to finance for refund (a replay finds the one recorded).
    overpaid = "overpaid"
    not_paid = "not_paid"  # it reports no payment (closed, failed): nothing to do
    refused = "refused"  # it does not fit our books: nothing changed


def settle_notification(channel: m.PaymentChannel, note: VerifiedNotification
                        ) -> NotificationOutcome:
    """Match a verified notification of `channel` to its payment and confirm it, once, as the
    system. One that does not fit (an unknown payment, another channel, another amount, an
    order no longer payable) changes nothing and is refused; a refusal naming one of our
    payments is audited (`notification_refused`)."""
    if not note.paid:
        return NotificationOutcome.not_paid
    P = m.Payment
    # Columns only: loading the Payment here would let the session keep a stale status past
    # the row lock that confirm_online_payment takes.
    found_channel = db.session.scalar(sa.select(P.channel).where(
        P.number == note.payment_number))
    try:
        if found_channel is channel and confirm_online_payment(
                note.payment_number, note.provider_trade_no, note.amount_fen, SYSTEM):
            return NotificationOutcome.confirmed
    except sa.exc.IntegrityError:
        # Another attempt of the order was confirmed at the same moment (the one-confirmed
        # index): this money came second.
        pass
    db.session.rollback()
    payment = db.session.scalars(sa.select(P).where(P.number == note.payment_number)
                                 ).one_or_none()
    if payment is not None and payment.channel is channel \
            and payment.status is PayS.confirmed \
            and payment.provider_trade_no == note.provider_trade_no \
            and payment.amount_fen == note.amount_fen:
        return NotificationOutcome.already_confirmed
    if payment is not None and payment.channel is channel \
            and payment.amount_fen == note.amount_fen and payment.status is not PayS.confirmed \
            and _overpaid_notification(payment, note):
        return NotificationOutcome.overpaid
    if payment is not None:
        record(SYSTEM, "payment", payment.id, "notification_refused", detail={
            "channel": channel.value, "provider_trade_no": note.provider_trade_no,
            "amount_fen": note.amount_fen, "payment_status": payment.status.value,
            "order_status": payment.order.status.value})
        db.session.commit()
    return NotificationOutcome.refused


def confirm_transfers(actor: Actor, payment_ids: Iterable[int] | sa.Select) -> BatchResult:
    """Finance confirms bank transfers, many at once. A declared transfer whose order was
    paid another way (or cancelled) meanwhile is money received twice: confirming it records
    an overpayment to refund, instead of leaving the declaration waiting for ever."""
    P = m.Payment
    transfers = sa.select(P.id).where(P.id.in_(as_id_select(P, payment_ids)),
                                      P.channel == Ch.transfer)
    late = db.session.scalars(scoped(sa.select(P).join(m.Order).where(
        P.id.in_(transfers), P.status.in_(PAYMENT_MOVES["overpaid"].from_),
        m.Order.status.in_((OS.paid, OS.cancelled))).order_by(P.id).with_for_update(of=P),
        P, actor, WRITE)).all()
    overpaid = BatchResult()
    for payment in late:
        record_overpayment(payment.order, channel=Ch.transfer, amount_fen=payment.amount_fen,
                           reference=declaration_reference(payment),
                           payer_name=payment.payer_name, payer_account=payment.payer_account,
                           actor=actor, payment=payment)
        overpaid.done.append(payment.id)
    result = confirm_payments(actor, transfers.where(P.id.not_in(overpaid.done)),
                              PAYMENT_MOVES["confirm"])
    result.done += overpaid.done
    receipts = [pid for pid in result.done if pid not in overpaid.done]
    notification_ids = create_notices(receipt_notices(receipts)) if receipts else []
    db.session.commit()
    enqueue_sends(notification_ids)
    send_noted()
    return result


def reject_transfers(actor: Actor, payment_ids: Iterable[int] | sa.Select,
                     reason: str | None) -> BatchResult:
    """Finance refuses vouchers, with a reason the unit sees; the unit may submit again."""
    reason = (reason or "").strip()
    if not reason:
        raise WorkflowError(_l("Give a reason; the unit will see it."), 400)
    P = m.Payment
    transfers = sa.select(P.id).where(P.id.in_(as_id_select(P, payment_ids)),
                                      P.channel == Ch.transfer)
    result = move(actor, P, transfers, PAYMENT_MOVES["reject"], label=P.number, reason=reason,
                  values={"reject_reason": reason}, commit=False)
    notification_ids = create_notices(rejection_notices(result.done)) if result.done else []
    db.session.commit()
    enqueue_sends(notification_ids)
    return result


def rejection_notices(payment_ids: list[int]) -> list[Notice]:
    """An SMS and an e-mail to the unit for each refused voucher, with finance's reason."""
    P = m.Payment
    rows = db.session.execute(
        sa.select(P.id, P.number, P.amount_fen, P.reject_reason, P.remitted_on,
                  m.Order.number.label("order"), m.Order.unit_id)
        .join(m.Order, m.Order.id == P.order_id).where(P.id.in_(payment_ids))).all()
    contacts = unit_contacts(row.unit_id for row in rows)
    notices = []
    for row in rows:
        def text(row: Any = row) -> tuple[str, str]:
            return (_("Your bank transfer voucher was not accepted"),
                    _("%(unit)s: finance did not accept the voucher of your bank transfer of "
                      "%(amount)s for order %(order)s (payment %(payment)s): %(reason)s "
                      "Please log in and declare the transfer again, or pay another way.",
                      unit=contacts.get(row.unit_id, ("",))[0],
                      amount=fmt_money(row.amount_fen), order=row.order, payment=row.number,
                      reason=row.reject_reason or ""))

        notices += unit_notices(f"transfer-rejected:{row.id}", row.unit_id, text, contacts,
                                "transfer_rejected",
                                {"unit": contacts.get(row.unit_id, ("",))[0],
                                 "amount": fmt_money(row.amount_fen), "order": row.order})
    return notices


def receipt_notices(payment_ids: list[int]) -> list[Notice]:
    """An e-mail receipt to the unit for each confirmed payment (one query)."""
    P = m.Payment
    rows = db.session.execute(
        sa.select(P.id, P.number, P.amount_fen, P.channel, m.Order.number.label("order"),
                  m.Unit.id.label("unit_id"), m.Unit.name, m.Unit.language, m.Unit.email)
        .join(m.Order, m.Order.id == P.order_id).join(m.Unit, m.Unit.id == m.Order.unit_id)
        .where(P.id.in_(payment_ids))).all()
    notices = []
    for row in rows:
        def text(row: Any = row) -> tuple[str, str]:
            return (_("Receipt for your CIIE badge fees"),
                    _("%(unit)s: we received %(amount)s by %(channel)s for order %(order)s "
                      "(payment %(payment)s). The persons of this order now go to security "
                      "review.", unit=row.name, amount=fmt_money(row.amount_fen),
                      channel=row.channel.label, order=row.order, payment=row.number))

        subject, body = render(row.language, text)
        notices.append(Notice(f"receipt:{row.id}", m.NotificationChannel.email, row.unit_id,
                              row.email or "", row.language, subject, body))
    return notices


# --------------------------------------------------------------------------------------------
# Overpayments (issue 12): money that arrives for an order already paid or cancelled is
# recorded once and refunded by finance, never lost and never left pending.
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _PaidTrade:
    """What a provider's refund call reads of "the payment": the merchant's number of the
    trade the money was paid to, the provider's number of it, its amount."""

    number: str
    provider_trade_no: str | None
    amount_fen: int


def declaration_reference(payment: m.Payment) -> str:
    """The reference of a declared transfer's money until its bank line is seen."""
    return f"voucher:{payment.number}"


def _overpayment_of(channel: m.PaymentChannel, reference: str) -> m.Overpayment | None:
    return db.session.scalars(sa.select(m.Overpayment).where(
        m.Overpayment.channel == channel, m.Overpayment.reference == reference)).one_or_none()


def record_overpayment(order: m.Order, *, channel: m.PaymentChannel, amount_fen: int,
                       reference: str, payer_name: str | None = None,
                       payer_account: str | None = None, actor: Actor | None = None,
                       payment: m.Payment | None = None) -> m.Overpayment:
    """Record money that arrived for `order` although it is already paid or cancelled: a
    provider's notice for an attempt the unit gave up, a second payment, a bank statement line
    for a paid order. Added to the current session (the caller commits), audited, with its
    notices to the unit (SMS and e-mail) and to finance created; they go out with the
    caller's next notices.enqueue_sends() after its commit (or notices.send_noted(); else the
    sweeper enqueues them).

    Idempotent per (channel, reference): the same provider trade or bank line again returns
    the overpayment already recorded. `payment` is the attempt the money was paid to; for a
    bank line without it, the order's transfer declaration waiting for finance is that money
    (it closes), and a declaration finance already confirmed as an overpayment takes the
    line's reference instead of being counted twice."""
    actor = actor or SYSTEM
    channel = m.PaymentChannel(channel)
    reference = (reference or "").strip()[:200]
    amount_fen = int(amount_fen)
    if not reference:
        raise WorkflowError(_l("An overpayment needs the provider's trade number or the bank "
                               "line's reference."), 400)
    if amount_fen <= 0:
        raise WorkflowError(_l("An overpayment needs a positive amount."), 400)
    if order.status is OS.pending:
        raise WorkflowError(_l("Order %(number)s is waiting for payment: this money pays it.",
                               number=order.number))
    existing = _overpayment_of(channel, reference)
    if existing is not None:
        return existing
    Ov = m.Overpayment
    if channel is Ch.transfer and payment is None:
        payment = waiting_transfer(order)
        if payment is not None and payment.amount_fen != amount_fen:
            payment = None
        if payment is None:
            # Finance confirmed the declaration as an overpayment already: this line is that
            # money (same order, same amount), now with its bank reference.
            declared = db.session.scalars(sa.select(Ov).join(
                m.Payment, m.Payment.id == Ov.payment_id).where(
                Ov.order_id == order.id, Ov.channel == Ch.transfer,
                Ov.amount_fen == amount_fen,
                Ov.reference == sa.literal("voucher:") + m.Payment.number)
                .order_by(Ov.id)).first()
            if declared is not None:
                record(actor, "overpayment", declared.id, "bank_line",
                       detail={"reference": reference, "was": declared.reference})
                declared.reference = reference
                declared.payer_account = declared.payer_account or payer_account
                db.session.flush()
                return declared
    if payment is not None:
        payer_name = payer_name or payment.payer_name
        payer_account = payer_account or payment.payer_account
    cause = m.OverpaymentCause.order_cancelled if order.status is OS.cancelled \
        else m.OverpaymentCause.already_paid
    try:
        with db.session.begin_nested():
            overpayment = Ov(
                number=_number("OP", "overpayment", order.edition), order_id=order.id,
                unit_id=order.unit_id, payment_id=payment.id if payment is not None else None,
                channel=channel, cause=cause, status=OvS.received, amount_fen=amount_fen,
                reference=reference, payer_name=(payer_name or "").strip()[:200] or None,
                payer_account=(payer_account or "").strip()[:64] or None)
            db.session.add(overpayment)
            db.session.flush()
    except sa.exc.IntegrityError:
        # The same money recorded by a request at the same moment.
        found = _overpayment_of(channel, reference)
        if found is None:
            raise
        return found
    record(actor, "overpayment", overpayment.id, "receive", to_state=OvS.received,
           detail={"order": order.number, "channel": channel.value, "amount_fen": amount_fen,
                   "reference": reference, "cause": cause.value,
                   "payment": payment.number if payment is not None else None})
    if payment is not None and payment.status in PAYMENT_MOVES["overpaid"].from_:
        move(actor, m.Payment, [payment.id], PAYMENT_MOVES["overpaid"], label=m.Payment.number,
             commit=False, scope_actor=SYSTEM)
    send_after_commit(create_notices(overpayment_notices(overpayment, "received")))
    return overpayment


def _overpaid_notification(payment: m.Payment, note: VerifiedNotification) -> bool:
    """A verified notice of money paid to `payment` while its order is paid or cancelled:
    record the overpayment (once) and tell the unit and finance."""
    db.session.execute(sa.select(m.Order.id).where(m.Order.id == payment.order_id)
                       .with_for_update())
    order = db.session.get(m.Order, payment.order_id, populate_existing=True)
    if order is None or order.status not in (OS.paid, OS.cancelled):
        db.session.rollback()
        return False
    record_overpayment(order, channel=payment.channel, amount_fen=note.amount_fen,
                       reference=note.provider_trade_no or payment.number, payment=payment,
                       payer_name=payment.payer_name, actor=SYSTEM)
    db.session.commit()
    send_noted()
    return True


def overpayment_notices(overpayment: m.Overpayment, event: str) -> list[Notice]:
    """The unit's SMS and e-mail and finance's e-mail when an overpayment is received, and
    the unit's when it was refunded."""
    order_number = overpayment.order.number
    amount = fmt_money(overpayment.amount_fen)
    channel = overpayment.channel
    key = f"overpayment:{overpayment.id}:{event}"
    contacts = unit_contacts([overpayment.unit_id])
    unit_name = contacts.get(overpayment.unit_id, ("",))[0]
    cancelled = overpayment.cause is m.OverpaymentCause.order_cancelled

    def received() -> tuple[str, str]:
        if cancelled:
            body = _("%(unit)s: we received %(amount)s by %(channel)s for order %(order)s, "
                     "which was cancelled. Nothing was lost: finance will return this money "
                     "to you (%(number)s); you need not do anything.", unit=unit_name,
                     amount=amount, channel=channel.label, order=order_number,
                     number=overpayment.number)
        else:
            body = _("%(unit)s: we received %(amount)s by %(channel)s for order %(order)s, "
                     "which was already paid: the money arrived twice. Nothing was lost: "
                     "finance will return this payment to you (%(number)s); you need not do "
                     "anything.", unit=unit_name, amount=amount, channel=channel.label,
                     order=order_number, number=overpayment.number)
        return _("Your CIIE badge fees arrived twice"), body

    def refunded() -> tuple[str, str]:
        return (_("Your payment made twice was returned"),
                _("%(unit)s: the %(amount)s you paid a second time for order %(order)s "
                  "(%(number)s) was returned to you (%(how)s).", unit=unit_name, amount=amount,
                  order=order_number, number=overpayment.number,
                  how=overpayment.refund_reference or channel.label))

    def to_finance() -> tuple[str, str]:
        return (_("Money paid twice to refund: %(number)s", number=overpayment.number),
                _("%(amount)s arrived by %(channel)s (reference %(reference)s) for order "
                  "%(order)s of %(unit)s, which is %(status)s. It is listed under Finance → "
                  "Overpayments to be refunded.", amount=amount, channel=channel.label,
                  reference=overpayment.reference, order=order_number, unit=unit_name,
                  status=overpayment.order.status.label))

    params = {"unit": unit_name, "amount": amount, "order": order_number,
              "number": overpayment.number}
    if event == "received":
        kind = "overpayment_cancelled_order" if cancelled else "overpayment_received"
        return unit_notices(key, overpayment.unit_id, received, contacts, kind, params) + \
            finance_notices(key, to_finance)
    return unit_notices(key, overpayment.unit_id, refunded, contacts, "overpayment_refunded",
                        params)


def refund_overpayments(actor: Actor, ids: Iterable[int] | sa.Select) -> BatchResult:
    """Finance sends overpayments back the way they came, through the provider of the
    attempt they were paid to (its refund number: the overpayment's). A transfer, or money
    without an online attempt, is refused here: it goes back by bank transfer."""
    Ov = m.Overpayment
    result = move(actor, Ov, ids, OVERPAYMENT_MOVES["refund"], label=Ov.number,
                  checks=[(sa.and_(Ov.channel.in_(ONLINE_CHANNELS), Ov.payment_id.is_not(None)),
                           _l("no provider route back: refund it by bank transfer and enter "
                              "the transfer's reference"))])
    for overpayment_id in result.done:
        ask_provider_to_refund(actor, overpayment_id)
    return result


def ask_provider_to_refund(actor: Actor, overpayment_id: int) -> str:
    """Ask the provider to refund a sent overpayment and record its answer: done (the unit is
    told), failed (finance may ask again or refund by transfer), pending or unreachable (it
    stays sent; asking again never refunds twice)."""
    from app.gateways.payments import GatewayError, gateway_for

    Ov = m.Overpayment
    overpayment = db.session.scalars(sa.select(Ov).where(Ov.id == overpayment_id)
                                     .with_for_update()).one_or_none()
    if overpayment is None or overpayment.status is not OvS.refund_sent \
            or overpayment.payment is None:
        db.session.rollback()
        return "skipped"
    trade = _PaidTrade(overpayment.payment.number, overpayment.reference,
                       overpayment.amount_fen)
    try:
        answer = gateway_for(overpayment.channel).refund(trade, overpayment.number,
                                                         overpayment.amount_fen)
    except GatewayError as exc:
        db.session.rollback()
        log.warning("refund of overpayment %s not settled: %s", overpayment.number, exc)
        return "pending"
    message = (answer.message or "")[:500] or None
    notification_ids: list[int] = []
    if answer.status == "done":
        move(actor, Ov, [overpayment.id], OVERPAYMENT_MOVES["refund_done"], label=Ov.number,
             values={"refunded_at": now(), "refund_message": message,
                     "refund_reference": (answer.provider_refund_id or "")[:200] or None},
             commit=False, scope_actor=SYSTEM)
        db.session.refresh(overpayment)
        notification_ids = create_notices(overpayment_notices(overpayment, "refunded"))
    elif answer.status == "failed":
        move(actor, Ov, [overpayment.id], OVERPAYMENT_MOVES["refund_failed"], label=Ov.number,
             reason=message, values={"refund_message": message}, commit=False,
             scope_actor=SYSTEM)
    else:
        record(actor, "overpayment", overpayment.id, "provider_pending", reason=message)
    db.session.commit()
    enqueue_sends(notification_ids)
    return answer.status


def refund_overpayments_by_transfer(actor: Actor, ids: Iterable[int] | sa.Select,
                                    reference: str | None) -> BatchResult:
    """Finance paid overpayments back by bank transfer: recorded with the transfer's
    reference (which the unit sees), the unit told."""
    reference = (reference or "").strip()
    if not reference:
        raise WorkflowError(_l("Enter the reference of the bank transfer that paid the money "
                               "back."), 400)
    Ov = m.Overpayment
    result = move(actor, Ov, ids, OVERPAYMENT_MOVES["refunded_by_transfer"], label=Ov.number,
                  reason=reference, values={"refund_reference": reference[:200],
                                            "refunded_at": now()}, commit=False)
    notices: list[Notice] = []
    for overpayment in db.session.scalars(sa.select(Ov).where(Ov.id.in_(result.done))):
        db.session.refresh(overpayment)
        notices += overpayment_notices(overpayment, "refunded")
    notification_ids = create_notices(notices)
    db.session.commit()
    enqueue_sends(notification_ids)
    return result
