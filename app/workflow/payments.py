"""Badge-fee orders and their payments: a unit orders badges for persons awaiting payment and
pays by QR code, B2B gateway or bank transfer; a confirmed payment sends the persons to
security review. Money is integer fen; every confirmation is race-safe and idempotent."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from app import models as m
from app import storage
from app.clock import SHANGHAI, now
from app.extensions import db
from app.formatting import fmt_money
from app.security import SYSTEM, WRITE, Actor, get_scoped, scoped
from app.workflow.audit import record
from app.workflow.editions import current_edition
from app.workflow.errors import BatchResult, WorkflowError
from app.workflow.notices import Notice, create_notices, enqueue_sends, render
from app.workflow.numbers import reserve
from app.workflow.persons import person_label
from app.workflow.transitions import as_id_select, move

PS = m.PersonStatus
OS = m.OrderStatus
PayS = m.PaymentStatus
Ch = m.PaymentChannel
PR = m.PersonRegistration
VOUCHER_TYPES = ("application/pdf", "image/jpeg", "image/png")


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
    result = move(actor, PR, ids, action="order", from_states=[PS.awaiting_payment],
                  to_state=PS.in_order, label=person_label(),
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
    if order.status is not OS.pending:
        raise WorkflowError(_l("Only an unpaid order can be cancelled."))
    under_review = db.session.scalar(sa.select(sa.func.count()).select_from(m.Payment).where(
        m.Payment.order_id == order.id, m.Payment.status == PayS.pending,
        m.Payment.channel == Ch.transfer))
    if under_review:
        raise WorkflowError(_l("Finance is checking a bank transfer for this order; it cannot "
                               "be cancelled now."))
    changed = db.session.execute(
        sa.update(m.Order).where(m.Order.id == order.id, m.Order.status == OS.pending)
        .values(status=OS.cancelled, cancelled_at=now())
        .execution_options(synchronize_session=False)).rowcount
    if changed != 1:
        db.session.rollback()
        raise WorkflowError(_l("The order was paid or changed meanwhile; reload the page."))
    items = sa.select(m.OrderItem.person_registration_id).where(
        m.OrderItem.order_id == order.id, m.OrderItem.active.is_(True))
    move(actor, PR, items, action="order_cancelled", from_states=[PS.in_order],
         to_state=PS.awaiting_payment, label=person_label(),
         values={"status_changed_at": now()}, commit=False)
    db.session.execute(sa.update(m.OrderItem).where(m.OrderItem.order_id == order.id)
                       .values(active=False))
    # Open online attempts go with the order (audited like every move).
    move(actor, m.Payment, sa.select(m.Payment.id).where(
        m.Payment.order_id == order.id, m.Payment.status.in_(m.OPEN_PAYMENT_STATUSES)),
        action="order_cancelled", from_states=m.OPEN_PAYMENT_STATUSES, to_state=PayS.withdrawn,
        label=m.Payment.number, commit=False)
    record(actor, "order", order.id, "cancel", from_state=OS.pending, to_state=OS.cancelled)
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
    if order.status is not OS.pending:
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


def _withdraw(actor: Actor, payment: m.Payment, action: str) -> None:
    move(actor, m.Payment, [payment.id], action=action, from_states=m.OPEN_PAYMENT_STATUSES,
         to_state=PayS.withdrawn, label=m.Payment.number, commit=False)


def _add_payment(actor: Actor, payment: m.Payment, action: str, detail: dict | None = None
                 ) -> m.Payment:
    """Insert the attempt; the partial unique index is the last guard of one open attempt."""
    db.session.add(payment)
    try:
        db.session.flush()
    except sa.exc.IntegrityError:
        db.session.rollback()
        raise WorkflowError(_l("Another payment for this order was started at the same "
                               "moment. Reload the page to see it."), 409) from None
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
        _withdraw(actor, current, "superseded")
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
        _withdraw(actor, current, "superseded")
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
    result = move(actor, m.Payment, [payment.id], action="withdraw",
                  from_states=[PayS.pending], to_state=PayS.withdrawn, label=m.Payment.number)
    if result.refused:
        raise WorkflowError(result.refused[0].reason)


def confirm_payments(actor: Actor, payment_ids: sa.Select | list[int], action: str,
                     provider_trade_no: str | None = None,
                     from_states: tuple[m.PaymentStatus, ...] = (PayS.pending,)
                     ) -> BatchResult:
    """Confirm pending payments and everything that follows, set-based: payments confirmed,
    their orders paid, the orders' persons sent to security review, receipts queued. A payment
    whose order was paid meanwhile (or that is no longer pending) is refused, not doubled."""
    P = m.Payment
    id_select = as_id_select(P, payment_ids)
    label = P.number
    # An order can be paid once: the partial unique index refuses a second confirmed payment.
    result = move(actor, P, id_select, action=action, from_states=from_states,
                  to_state=PayS.confirmed, label=label,
                  checks=[(P.order_id.in_(sa.select(m.Order.id).where(
                      m.Order.status == OS.pending)), _l("the order is already paid or "
                                                          "cancelled"))],
                  values={"confirmed_at": now(),
                          **({"provider_trade_no": provider_trade_no}
                             if provider_trade_no else {})}, commit=False)
    if not result.done:
        return result
    order_ids = list(db.session.scalars(sa.select(P.order_id).where(P.id.in_(result.done))))
    # What follows from the confirmed payments is not the actor's to choose: system scope.
    orders = move(actor, m.Order, order_ids, action="paid", from_states=[OS.pending],
                  to_state=OS.paid, label=m.Order.number, values={"paid_at": now()},
                  commit=False, scope_actor=SYSTEM)
    persons = sa.select(m.OrderItem.person_registration_id).where(
        m.OrderItem.order_id.in_(orders.done), m.OrderItem.active.is_(True))
    move(actor, PR, persons, action="paid", from_states=[PS.in_order],
         to_state=PS.awaiting_review, label=person_label(),
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
    if payment.status not in (PayS.pending, PayS.withdrawn) \
            or payment.amount_fen != int(amount_fen):
        db.session.rollback()
        return False
    # A withdrawn attempt (the unit chose another way meanwhile) was still paid: the money is
    # real, so it pays the order if the order still waits.
    result = confirm_payments(actor, [payment.id], "notified", provider_trade_no,
                              (PayS.pending, PayS.withdrawn))
    if not result.done:
        db.session.rollback()
        return False
    notification_ids = create_notices(receipt_notices([payment.id]))
    db.session.commit()
    enqueue_sends(notification_ids)
    return True


def confirm_transfers(actor: Actor, payment_ids: Iterable[int] | sa.Select) -> BatchResult:
    """Finance confirms bank transfers, many at once."""
    P = m.Payment
    transfers = sa.select(P.id).where(P.id.in_(as_id_select(P, payment_ids)),
                                      P.channel == Ch.transfer)
    result = confirm_payments(actor, transfers, "confirm")
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
    return move(actor, P, transfers, action="reject", from_states=[PayS.pending],
                to_state=PayS.rejected, label=P.number, reason=reason,
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


def payable_persons(actor: Actor) -> sa.Select:
    """The unit's persons that can be put in an order now."""
    return scoped(sa.select(PR.id).where(PR.status == PS.awaiting_payment,
                                         PR.edition_id == current_edition().id),
                  PR, actor, WRITE)
