"""Badge-fee orders and their payments: a unit orders badges for persons awaiting payment and
pays by QR code, B2B gateway or bank transfer; a confirmed payment sends the persons to
security review. Money is integer fen; every confirmation is race-safe and idempotent."""
from __future__ import annotations

import enum
from collections.abc import Iterable
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
from app.scoping.rules import get_scoped
from app.workflow.audit import record
from app.workflow.editions import current_edition
from app.workflow.errors import BatchResult, WorkflowError
from app.workflow.notices import Notice, create_notices, enqueue_sends, render
from app.workflow.numbers import reserve
from app.workflow.persons import PERSON_MOVES, person_label
from app.workflow.transitions import Move, as_id_select, insert_guarded, move, table

if TYPE_CHECKING:
    from app.gateways.payments.base import VerifiedNotification

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
    # An open attempt gives way to one of another channel, or goes with its cancelled order.
    "superseded": Move(from_=set(m.OPEN_PAYMENT_STATUSES), to=PayS.withdrawn),
    "order_cancelled": Move(from_=set(m.OPEN_PAYMENT_STATUSES), to=PayS.withdrawn),
})


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
    return None


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
        raise WorkflowError(_l("A bank transfer for this order is waiting for finance. "
                               "Withdraw it on the order's page to pay another way."))
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
    return payment


def withdraw_transfer(actor: Actor, order_id: int, payment_id: int) -> None:
    """The unit takes back its transfer declaration before finance decided (to declare it
    again or pay another way)."""
    payment = get_scoped(m.Payment, payment_id, actor, WRITE)
    if payment is None or payment.order_id != order_id or payment.channel is not Ch.transfer:
        raise WorkflowError(_l("No such order."), 404)
    result = move(actor, m.Payment, [payment.id], PAYMENT_MOVES["withdraw"],
                  label=m.Payment.number)
    if result.refused:
        raise WorkflowError(result.refused[0].reason)


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
    return result


def confirm_online_payment(payment_number: str, provider_trade_no: str, amount_fen: int,
                           actor: Actor) -> bool:
    """A verified provider notification: confirm the payment once. Returns False (and changes
    nothing) for an unknown payment, a wrong amount or a payment already settled, so replays
    and altered notifications are harmless. Two notifications at once confirm once."""
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
    notification_ids = create_notices(receipt_notices([payment.id]))
    db.session.commit()
    enqueue_sends(notification_ids)
    return True


class NotificationOutcome(enum.Enum):
    """What a verified provider notification did. All but `refused` tell the provider it was
    taken (so it stops sending); a refusal makes a genuine provider retry while we look."""

    confirmed = "confirmed"
    already_confirmed = "already_confirmed"  # a replay: the provider was not sure we got it
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
    if found_channel is channel and confirm_online_payment(
            note.payment_number, note.provider_trade_no, note.amount_fen, SYSTEM):
        return NotificationOutcome.confirmed
    db.session.rollback()
    payment = db.session.scalars(sa.select(P).where(P.number == note.payment_number)
                                 ).one_or_none()
    if payment is not None and payment.channel is channel \
            and payment.status is PayS.confirmed \
            and payment.provider_trade_no == note.provider_trade_no \
            and payment.amount_fen == note.amount_fen:
        return NotificationOutcome.already_confirmed
    if payment is not None:
        record(SYSTEM, "payment", payment.id, "notification_refused", detail={
            "channel": channel.value, "provider_trade_no": note.provider_trade_no,
            "amount_fen": note.amount_fen, "payment_status": payment.status.value,
            "order_status": payment.order.status.value})
        db.session.commit()
    return NotificationOutcome.refused


def confirm_transfers(actor: Actor, payment_ids: Iterable[int] | sa.Select) -> BatchResult:
    """Finance confirms bank transfers, many at once."""
    P = m.Payment
    transfers = sa.select(P.id).where(P.id.in_(as_id_select(P, payment_ids)),
                                      P.channel == Ch.transfer)
    result = confirm_payments(actor, transfers, PAYMENT_MOVES["confirm"])
    notification_ids = create_notices(receipt_notices(result.done)) if result.done else []
    db.session.commit()
    enqueue_sends(notification_ids)
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
    return move(actor, P, transfers, PAYMENT_MOVES["reject"], label=P.number, reason=reason,
                values={"reject_reason": reason})


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
