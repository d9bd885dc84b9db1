"""Refunds of badge fees for persons rejected in security review or cancelled by their unit:
requested by the unit, approved and executed by finance, back the original route (QR, B2B and
transfers) or, for transfers, to another account. Never more than was paid: the payment row
books every refund and SQL refuses the excess, also when two requests race."""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from rq import Retry
from sqlalchemy.exc import IntegrityError

from app import models as m
from app.clock import now
from app.extensions import db, queue
from app.scoping.actor import SYSTEM, WRITE, Actor
from app.scoping.rules import scoped
from app.workflow.audit import record
from app.workflow.editions import current_edition
from app.workflow.errors import BatchResult, WorkflowError
from app.workflow.numbers import reserve
from app.workflow.persons import PERSON_MOVES, person_label
from app.workflow.transitions import Move, as_id_select, move, table

log = logging.getLogger(__name__)
RS = m.RefundStatus
PR = m.PersonRegistration
OI = m.OrderItem
REFUNDABLE = PERSON_MOVES["refunded"].from_
# The refund's state machine (docs/design.md, "States").
REFUND_MOVES = table({
    "approve": Move(from_={RS.requested}, to=RS.approved),
    "reject": Move(from_={RS.requested}, to=RS.rejected),
    # A sent refund may be executed again: the provider answers the same refund number once.
    "execute": Move(from_={RS.approved, RS.failed, RS.sent}, to=RS.sent),
    "done": Move(from_={RS.sent}, to=RS.done),
    "failed": Move(from_={RS.sent}, to=RS.failed),
})
ONLINE = (m.PaymentChannel.alipay, m.PaymentChannel.wechat, m.PaymentChannel.unionpay,
          m.PaymentChannel.b2b)


@dataclass
class RefundBatch(BatchResult):
    """What a refund request did: `done` holds the persons whose refund was asked for (one
    refund per payment, in `refunds`); each refused person is named with its order and why."""

    refunds: list[m.Refund] = field(default_factory=list)


def request_refunds(actor: Actor, registration_ids: Iterable[int], route: m.RefundRoute,
                    account_name: str | None = None, account_bank: str | None = None,
                    account_no: str | None = None, whole: bool = False) -> RefundBatch:
    """The unit asks to be refunded for rejected or cancelled persons it paid for: one refund
    per payment. What can be refunded is; each other person is refused with its reason (not
    paid for, not rejected or cancelled, already being refunded, an invoice still covers its
    order: "void the invoice first", another account for a payment that was no transfer).
    `whole`: nothing is asked for when anyone is refused."""
    if actor.unit_id is None:
        raise WorkflowError(_l("Only a unit account can do this."), 403)
    route = m.RefundRoute(route)
    ids = sorted({int(i) for i in registration_ids})
    if not ids:
        raise WorkflowError(_l("Choose the persons to refund."), 400)
    other = route is m.RefundRoute.other_account
    if other and not all((x or "").strip() for x in (account_name, account_bank, account_no)):
        raise WorkflowError(_l("Enter the account holder, bank and account number."), 400)
    mine = db.session.execute(scoped(
        sa.select(PR.id, person_label().label("label")).where(PR.id.in_(ids)),
        PR, actor, WRITE)).all()
    if {row.id for row in mine} != set(ids):
        raise WorkflowError(_l("No such person."), 404)
    names = {row.id: row.label for row in mine}
    # One read for the batch: each person's paid item, its payment and whether it can go.
    being_refunded = sa.exists().where(m.RefundItem.order_item_id == OI.id,
                                       m.RefundItem.active.is_(True))
    invoiced = sa.exists().where(
        m.Invoice.order_id == m.Order.id, m.Invoice.reversal_of_id.is_(None),
        m.Invoice.status.in_(m.ACTIVE_INVOICE_STATUSES))
    rows = {row.id: row for row in db.session.execute(
        sa.select(PR.id, PR.status, OI.id.label("item"), OI.amount_fen,
                  m.Payment.id.label("payment"), m.Payment.channel,
                  m.Order.number.label("order"), being_refunded.label("being_refunded"),
                  invoiced.label("invoiced"))
        .join(OI, sa.and_(OI.person_registration_id == PR.id, OI.active.is_(True)))
        .join(m.Order, sa.and_(m.Order.id == OI.order_id, m.Order.status == m.OrderStatus.paid))
        .join(m.Payment, sa.and_(m.Payment.order_id == m.Order.id,
                                 m.Payment.status == m.PaymentStatus.confirmed))
        .where(PR.id.in_(ids))).all()}
    result = RefundBatch()
    accepted = []
    for person_id in ids:
        row = rows.get(person_id)
        reason = None
        if row is None:
            reason = _l("your unit has not paid for this person")
        elif row.status not in REFUNDABLE:
            reason = _l("only persons rejected in review or cancelled can be refunded (status: "
                        "%(status)s)", status=row.status.label)
        elif row.being_refunded:
            reason = _l("already being refunded")
        elif row.invoiced:
            reason = _l("an invoice covers order %(order)s: void the invoice first, then ask "
                        "for the refund", order=row.order)
        elif other and row.channel is not m.PaymentChannel.transfer:
            reason = _l("paid by %(channel)s: only a bank transfer can be refunded to another "
                        "account", channel=row.channel.label)
        if reason is None:
            accepted.append(row)
            continue
        label = _l("%(name)s (order %(order)s)", name=names[person_id], order=row.order) \
            if row is not None else names[person_id]
        result.refuse(person_id, label, reason)
    if not accepted or (whole and result.refused):
        return result
    by_payment: dict[int, list] = defaultdict(list)
    for row in accepted:
        by_payment[row.payment].append(row)
    numbers = iter(reserve("refund", len(by_payment)))
    year = current_edition().start_date.year
    try:
        for payment_id, items in sorted(by_payment.items()):
            amount = sum(item.amount_fen for item in items)
            # Book the refund on the payment first: SQL refuses more than was paid, and the
            # row lock makes a racing request wait and then fail the same check.
            db.session.execute(sa.update(m.Payment).where(m.Payment.id == payment_id)
                               .values(refunded_fen=m.Payment.refunded_fen + amount))
            refund = m.Refund(
                number=f"R{year}{next(numbers):06d}", payment_id=payment_id,
                unit_id=actor.unit_id, status=RS.requested, amount_fen=amount, route=route,
                account_name=(account_name or "").strip() or None,
                account_bank=(account_bank or "").strip() or None,
                account_no=(account_no or "").strip() or None)
            db.session.add(refund)
            db.session.flush()
            db.session.execute(sa.insert(m.RefundItem), [
                {"refund_id": refund.id, "order_item_id": item.item,
                 "amount_fen": item.amount_fen, "active": True} for item in items])
            record(actor, "refund", refund.id, "request", to_state=RS.requested,
                   detail={"persons": [item.id for item in items], "amount_fen": amount})
            result.refunds.append(refund)
            result.done.extend(item.id for item in items)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise WorkflowError(_l("These persons are already being refunded."), 409) from None
    return result


def request_refund(actor: Actor, registration_ids: Iterable[int], route: m.RefundRoute,
                   account_name: str | None = None, account_bank: str | None = None,
                   account_no: str | None = None) -> list[m.Refund]:
    """All or nothing (the API, a single person): the first refusal is the error."""
    result = request_refunds(actor, registration_ids, route, account_name, account_bank,
                             account_no, whole=True)
    if result.refused:
        first = result.refused[0]
        raise WorkflowError(_l("%(person)s: %(reason)s", person=first.label,
                               reason=first.reason), 409)
    return result.refunds


def _release(refund_ids: list[int]) -> None:
    """Give the booked amounts back to their payments and free the persons' items."""
    totals = db.session.execute(sa.select(m.Refund.payment_id, sa.func.sum(m.Refund.amount_fen))
                                .where(m.Refund.id.in_(refund_ids))
                                .group_by(m.Refund.payment_id)).all()
    for payment_id, amount in totals:
        db.session.execute(sa.update(m.Payment).where(m.Payment.id == payment_id)
                           .values(refunded_fen=m.Payment.refunded_fen - amount))
    db.session.execute(sa.update(m.RefundItem).where(m.RefundItem.refund_id.in_(refund_ids))
                       .values(active=False))


def approve_refunds(actor: Actor, ids: Iterable[int] | sa.Select) -> BatchResult:
    return move(actor, m.Refund, ids, REFUND_MOVES["approve"], label=m.Refund.number)


def reject_refunds(actor: Actor, ids: Iterable[int] | sa.Select,
                   reason: str | None) -> BatchResult:
    reason = (reason or "").strip()
    if not reason:
        raise WorkflowError(_l("Enter the reason for rejecting the refund; the unit will see "
                               "it."), 400)
    result = move(actor, m.Refund, ids, REFUND_MOVES["reject"], label=m.Refund.number,
                  reason=reason,
                  values={"reason": reason}, commit=False)
    if result.done:
        _release(result.done)
    db.session.commit()
    return result


def execute_refunds(actor: Actor, ids: Iterable[int] | sa.Select) -> BatchResult:
    """Finance executes approved refunds: online payments go back through their provider (a
    job that retries until the provider answers); transfers are paid out by the bank and
    confirmed done by finance."""
    result = move(actor, m.Refund, ids, REFUND_MOVES["execute"], label=m.Refund.number)
    online = list(db.session.scalars(sa.select(m.Refund.id).join(m.Payment).where(
        m.Refund.id.in_(result.done), m.Payment.channel.in_(ONLINE))))
    for refund_id in online:
        try:
            enqueue_refund(refund_id)
        except Exception:  # inline (no Redis): the refund stays sent; finance executes again
            db.session.rollback()
            log.warning("refund %s not settled yet", refund_id, exc_info=True)
    return result


def enqueue_refund(refund_id: int, outbox: bool = True) -> None:
    """Ask the provider to refund, again until it settles (rq's scheduler fires the retries).
    A sent refund is the outbox: if Redis does not answer, the sweeper enqueues it later."""
    queue.enqueue("app.jobs.send_refund", refund_id, job_id=f"refund-{refund_id}", outbox=outbox,
                  retry=Retry(max=8, interval=[30, 60, 300, 900, 1800, 3600]))


def complete_refunds(actor: Actor, ids: Iterable[int] | sa.Select) -> BatchResult:
    """Finance confirms the bank paid out transferred refunds."""
    R = m.Refund
    transfers = sa.select(R.id).where(R.id.in_(as_id_select(R, ids)), R.payment_id.in_(
        sa.select(m.Payment.id).where(m.Payment.channel == m.PaymentChannel.transfer)))
    result = move(actor, R, transfers, REFUND_MOVES["done"], label=R.number,
                  values={"done_at": now()}, commit=False)
    _persons_refunded(actor, result.done)
    db.session.commit()
    return result


def _persons_refunded(actor: Actor, refund_ids: list[int]) -> None:
    if not refund_ids:
        return
    persons = sa.select(OI.person_registration_id).join(
        m.RefundItem, m.RefundItem.order_item_id == OI.id).where(
        m.RefundItem.refund_id.in_(refund_ids), m.RefundItem.active.is_(True))
    move(actor, PR, persons, PERSON_MOVES["refunded"], label=person_label(),
         values={"status_changed_at": now()},
         commit=False, scope_actor=SYSTEM)


def record_provider_answer(actor: Actor, refund_id: int, status: str,
                           provider_refund_id: str | None, message: str | None) -> str:
    """What the provider said about a sent refund: done (persons refunded) or failed (finance
    may execute it again); "pending" leaves it sent for the next try."""
    refund = db.session.scalars(sa.select(m.Refund).where(m.Refund.id == refund_id)
                                .with_for_update()).one_or_none()
    # The provider answers only about a sent refund (done and failed both leave "sent").
    if refund is None or refund.status not in REFUND_MOVES["done"].from_:
        db.session.rollback()
        return "skipped"
    refund.attempts += 1
    refund.provider_refund_id = provider_refund_id or refund.provider_refund_id
    # The row is locked and chosen by the job, not by anyone's scope.
    if status == "done":
        move(actor, m.Refund, [refund.id], REFUND_MOVES["done"], label=m.Refund.number,
             values={"done_at": now()}, commit=False, scope_actor=SYSTEM)
        _persons_refunded(actor, [refund.id])
    elif status == "failed":
        move(actor, m.Refund, [refund.id], REFUND_MOVES["failed"], label=m.Refund.number,
             reason=message, values={"reason": (message or "")[:500] or refund.reason},
             commit=False, scope_actor=SYSTEM)
    db.session.commit()
    return status

