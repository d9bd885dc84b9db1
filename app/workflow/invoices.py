"""VAT invoices for paid badge-fee orders: requested by the unit, issued by the invoicing
platform (e-invoice: a job submits it and takes the platform's number and files,
app/gateways/einvoice/) or by finance (paper special invoice, then mailed), and voided.

Invoices are never edited or deleted once issued: voiding an e-invoice adds a linked red-letter
reversal (a new row with `reversal_of_id`) that the platform issues after its red-letter
confirmation form (红字确认单), with its own number and files; then the original is voided. If
the platform refuses the reversal (the buyer denies the form), the reversal is rejected and the
original is issued again. A paper invoice is voided when finance confirms it came back. One
active invoice per order is held by a partial unique index; `active_invoice_exists` tells the
refund workflow.

For B2B and bank-transfer payments the buyer is the payer: its name, taxpayer id, bank and
account come from the payment and cannot be changed (`buyer_locked`). A request that names
another buyer is refused, not silently corrected, so the unit knows what will be printed.
"""
from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

import sqlalchemy as sa
from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from rq import Retry
from sqlalchemy.exc import IntegrityError

from app import models as m
from app import storage
from app.clock import now
from app.extensions import db, queue
from app.formatting import fmt_money
from app.gateways.einvoice import InvoiceRequest, Outcome, PlatformError, einvoice_platform
from app.labels import COLUMN_LABELS
from app.scoping.actor import FINANCE, SYSTEM, WRITE, Actor
from app.scoping.rules import get_scoped, scoped
from app.validation import ValidationFailed, normalise_uscc
from app.workflow import statements
from app.workflow.audit import record, record_many
from app.workflow.errors import BatchResult, InputRefused, WorkflowError
from app.workflow.notices import Notice, create_notices, enqueue_sends, render
from app.workflow.transitions import Move, as_id_select, move, table, wrong_state

log = logging.getLogger(__name__)

# The e-invoice job, by its dotted path (app.jobs imports the workflow, not the other way round).
MAKE_PDF = "app.jobs.make_invoice_pdf"
# Asking the platform again for an invoice it is still issuing (its guide polls after 3-5 s; a
# red-letter form may wait up to 72 hours for the buyer, then the sweeper keeps asking).
PLATFORM_RETRY = (5, 30, 120, 600, 1800, 3600)
Inv = m.Invoice
IS = m.InvoiceStatus
IK = m.InvoiceKind
Ch = m.PaymentChannel
RECORD = "invoice"
# The invoice's state machine (docs/design.md, "States").
INVOICE_MOVES = table({
    "issue": Move(from_={IS.requested}, to=IS.issued),
    "mail": Move(from_={IS.issued}, to=IS.mailed),
    "reject": Move(from_={IS.requested}, to=IS.rejected),
    # The unit takes back a request finance has not issued yet (issue 12), then may ask again.
    "withdraw": Move(from_={IS.requested}, to=IS.withdrawn),
    "request_void": Move(from_={IS.issued, IS.mailed}, to=IS.void_requested),
    # An e-invoice is voided by its red-letter reversal, a paper one when finance has it back.
    "reverse": Move(from_={IS.void_requested}, to=IS.voided),
    "void": Move(from_={IS.void_requested}, to=IS.voided),
    # The platform refused the red-letter reversal (the buyer denied the form): still issued.
    "keep": Move(from_={IS.void_requested}, to=IS.issued),
})
# The payment names the buyer for these channels: the paying unit's own corporate account.
LOCKED_CHANNELS = (Ch.b2b, Ch.transfer)
# Refunds still moving: the amount to invoice is not settled until they are done or refused.
OPEN_REFUND_STATUSES = (m.RefundStatus.requested, m.RefundStatus.approved,
                        m.RefundStatus.sent, m.RefundStatus.failed)
PAPER_NUMBER = re.compile(r"^\d{8,20}$")
# Our order number at the platform (orderNo, billId: at most 20 characters), one per invoice.
PLATFORM_ORDER_PREFIX = "CIIE"


@dataclass
class BuyerData:
    """The buyer printed on the invoice, as the unit typed it (or as the payment names it)."""

    name: str = ""
    tax_id: str = ""
    address: str = ""
    phone: str = ""
    bank: str = ""
    account: str = ""

    def cleaned(self) -> "BuyerData":
        return BuyerData(**{f.name: (getattr(self, f.name) or "").strip()
                            for f in fields(self)})


# What the payment knows of its payer, hence what a locked buyer cannot change.
LOCKED_FIELDS = ("name", "tax_id", "bank", "account")


def _label() -> Any:
    """How a refused invoice is named in a batch report: its number, else #id."""
    return sa.func.coalesce(Inv.number, sa.literal("#") + sa.cast(Inv.id, sa.String))


def _one(result: BatchResult) -> None:
    """A single-record move: a refusal becomes the error the form shows."""
    if result.refused:
        db.session.rollback()
        raise WorkflowError(result.refused[0].reason)
    if not result.done:
        db.session.rollback()
        raise WorkflowError(_l("No such invoice."), 404)


def _require_finance(actor: Actor) -> None:
    if not (actor.is_admin or actor.has(FINANCE)):
        raise WorkflowError(_l("Only finance can do this."), 403)


def active_invoice_exists(order_id: int) -> bool:
    """Whether an invoice covers the order (requested, issued, mailed or being voided): the
    refund workflow refuses until it is voided or rejected."""
    return bool(db.session.scalar(sa.select(sa.exists().where(
        Inv.order_id == order_id, Inv.reversal_of_id.is_(None),
        Inv.status.in_(m.ACTIVE_INVOICE_STATUSES)))))


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------

def confirmed_payment(order_id: int) -> m.Payment | None:
    return db.session.scalars(sa.select(m.Payment).where(
        m.Payment.order_id == order_id,
        m.Payment.status == m.PaymentStatus.confirmed)).one_or_none()


def _payer(payment: m.Payment, unit: m.Unit) -> BuyerData:
    """The payer as the payment records it. A B2B payment comes from the unit's own corporate
    account, so what the gateway did not report is the unit's own data; a payer named like the
    unit without a taxpayer id recorded is the unit itself."""
    name = (payment.payer_name or "").strip() or unit.name
    tax_id = _compact_tax_id(payment.payer_tax_id)
    if not tax_id and name == unit.name:
        tax_id = unit.uscc or ""
    return BuyerData(name=name, tax_id=tax_id, bank=(payment.payer_bank or "").strip(),
                     account=(payment.payer_account or "").strip())


def _payable_order(actor: Actor, order_id: int) -> tuple[m.Order, m.Payment]:
    """The actor's paid order and its confirmed payment, or the reason it cannot be invoiced."""
    if actor.unit_id is None:
        raise WorkflowError(_l("Only a unit account can do this."), 403)
    order = get_scoped(m.Order, order_id, actor, WRITE)
    if order is None:
        raise WorkflowError(_l("No such order."), 404)
    payment = confirmed_payment(order.id) if order.status is m.OrderStatus.paid else None
    if payment is None:
        raise WorkflowError(_l("Only a paid order can be invoiced."))
    return order, payment


def buyer_defaults(actor: Actor, order_id: int) -> tuple[m.Order, BuyerData, bool]:
    """The order, the buyer to pre-fill the request form with, and whether it is locked (the
    payer of a B2B or transfer payment) or only a suggestion (the unit itself, for QR)."""
    order, payment = _payable_order(actor, order_id)
    unit = order.unit
    if payment.channel in LOCKED_CHANNELS:
        return order, _payer(payment, unit), True
    return order, BuyerData(name=unit.name, tax_id=unit.uscc or "", address=unit.address or ""), \
        False


def _compact_tax_id(value: str | None) -> str:
    return re.sub(r"[\s-]", "", value or "").upper()


def _checked_buyer(kind: m.InvoiceKind, typed: BuyerData, payer: BuyerData | None) -> BuyerData:
    """The buyer to print: when locked, the payer's fields as the payment recorded them (a
    request naming another buyer is refused; a field the payment left empty, e.g. a bank the
    gateway did not report, the unit completes); the typed ones otherwise. The taxpayer id is
    checked, and a special invoice must be complete."""
    buyer = typed.cleaned()
    if payer is not None:
        for name in LOCKED_FIELDS:
            given, fixed = getattr(buyer, name), getattr(payer, name)
            if name == "tax_id":
                given = _compact_tax_id(given)
            if not fixed:
                setattr(buyer, name, given)
                continue
            if given and given != fixed:
                raise WorkflowError(_l(
                    "The buyer of this invoice is the paying unit, %(payer)s, as the payment "
                    "names it; its name, taxpayer ID, bank and account cannot be changed.",
                    payer=payer.name), 400)
            setattr(buyer, name, fixed)
    if not buyer.name:
        raise WorkflowError(_l("Enter the buyer's name."), 400)
    if buyer.tax_id:
        try:
            buyer.tax_id = normalise_uscc(buyer.tax_id)
        except ValidationFailed as exc:
            if payer is not None:
                raise WorkflowError(_l(
                    "The taxpayer ID recorded with the payment is not valid (%(reason)s); "
                    "please contact finance.", reason=exc.message), 400) from None
            raise WorkflowError(exc.message, 400) from None
    if kind is IK.paper_special:
        missing = [label for value, label in (
            (buyer.tax_id, _l("taxpayer ID")), (buyer.address, _l("address")),
            (buyer.phone, _l("phone")), (buyer.bank, _l("bank")),
            (buyer.account, _l("account")))
            if not value]
        if missing:
            raise WorkflowError(_l(
                "A special VAT invoice needs the buyer's name, taxpayer ID, address, phone, "
                "bank and account; missing: %(fields)s.",
                fields=", ".join(str(label) for label in missing)), 400)
    return buyer


def _invoicable_fen(order: m.Order, payment: m.Payment) -> int:
    """What the order still holds: its persons' fees minus those already refunded."""
    RI = m.RefundItem
    if db.session.scalar(sa.select(sa.exists().where(
            m.Refund.payment_id == payment.id, m.Refund.status.in_(OPEN_REFUND_STATUSES)))):
        raise WorkflowError(_l("A refund for this order is in progress; ask for the invoice "
                               "once it is finished."))
    refunded = sa.select(RI.order_item_id).join(m.Refund, m.Refund.id == RI.refund_id).where(
        RI.active.is_(True), m.Refund.status == m.RefundStatus.done)
    amount = db.session.scalar(sa.select(sa.func.coalesce(sa.func.sum(m.OrderItem.amount_fen), 0))
                               .where(m.OrderItem.order_id == order.id,
                                      m.OrderItem.active.is_(True),
                                      m.OrderItem.id.not_in(refunded)))
    if not amount:
        raise WorkflowError(_l("Nothing is left to invoice on this order: every fee was "
                               "refunded."))
    return int(amount)


def request_invoice(actor: Actor, order_id: int, kind: m.InvoiceKind | str,
                    buyer: BuyerData) -> m.Invoice:
    """The unit asks for an invoice for its paid order. An e-invoice is then made by a job."""
    try:
        kind = IK(kind)
    except ValueError:
        raise WorkflowError(_l("Choose the kind of invoice."), 400) from None
    order, payment = _payable_order(actor, order_id)
    already = _l("An invoice for this order is already requested or issued; void it first to "
                 "ask for another one.")
    if active_invoice_exists(order.id):
        raise WorkflowError(already)
    locked = payment.channel in LOCKED_CHANNELS
    data = _checked_buyer(kind, buyer, _payer(payment, order.unit) if locked else None)
    invoice = Inv(order_id=order.id, unit_id=order.unit_id, kind=kind, status=IS.requested,
                  amount_fen=_invoicable_fen(order, payment), buyer_name=data.name,
                  buyer_tax_id=data.tax_id or None, buyer_address=data.address or None,
                  buyer_phone=data.phone or None, buyer_bank=data.bank or None,
                  buyer_account=data.account or None, buyer_locked=locked)
    db.session.add(invoice)
    try:
        db.session.flush()
    except IntegrityError:
        # Two requests at once: the partial unique index lets one through.
        db.session.rollback()
        raise WorkflowError(already) from None
    record(actor, RECORD, invoice.id, "request", to_state=IS.requested,
           detail={"kind": kind.value, "amount_fen": invoice.amount_fen,
                   "buyer_locked": locked, "order": order.number})
    db.session.commit()
    if kind is IK.e_normal:
        schedule_pdfs([invoice.id])
    return invoice


# --------------------------------------------------------------------------------------------
# E-invoices and reversals: the job that has the platform issue them
# --------------------------------------------------------------------------------------------

class EInvoicePending(Exception):
    """The platform has not issued the invoice yet: the job runs again later."""


def schedule_pdfs(invoice_ids: Iterable[int]) -> None:
    """After the commit: have the platform issue each e-invoice (or reversal) in a job, asked
    again while the platform is still issuing. Inline, a failure leaves the invoice requested
    (the sweeper, or finance, tries again) instead of failing the request."""
    for invoice_id in invoice_ids:
        if queue.inline:
            try:
                queue.enqueue(MAKE_PDF, invoice_id)
            except EInvoicePending:
                log.info("invoice %s: the platform is still issuing it", invoice_id)
            except Exception:  # logged; the invoice stays as it was, retried from finance
                db.session.rollback()
                log.exception("invoice %s: not issued", invoice_id)
        else:
            # The requested invoice is the outbox: the sweeper enqueues it if Redis is down.
            queue.enqueue(MAKE_PDF, invoice_id, job_id=f"invoice-pdf-{invoice_id}",
                          outbox=True, retry=Retry(max=len(PLATFORM_RETRY),
                                                   interval=list(PLATFORM_RETRY)))


def _platform_request(invoice: m.Invoice) -> InvoiceRequest:
    original = invoice.reversal_of
    return InvoiceRequest(
        order_no=invoice.platform_order_no or f"{PLATFORM_ORDER_PREFIX}{invoice.id:016d}",
        order_number=invoice.order.number, ordered_at=invoice.created_at,
        amount_fen=invoice.amount_fen, fee_fen=invoice.order.fee_fen,
        buyer_name=invoice.buyer_name, buyer_tax_id=invoice.buyer_tax_id,
        buyer_address=invoice.buyer_address, buyer_phone=invoice.buyer_phone,
        buyer_bank=invoice.buyer_bank, buyer_account=invoice.buyer_account,
        reverses=original.number if original else None)


def _waiting(invoice_id: int) -> m.Invoice | None:
    """The e-invoice (or reversal) waiting for the platform, locked; None for anything else."""
    invoice = db.session.scalars(sa.select(Inv).where(Inv.id == invoice_id)
                                 .with_for_update()).one_or_none()
    if invoice is None or invoice.kind is not IK.e_normal or \
            invoice.status not in INVOICE_MOVES["issue"].from_:
        db.session.rollback()
        return None
    return invoice


def make_pdf(invoice_id: int) -> str:
    """Have the invoicing platform issue a requested e-invoice or red-letter reversal: submit
    it once (the platform knows it by our order number, so a job run twice submits it once),
    then take its result: issued, its number, date and files are stored and the invoice is
    issued (a reversal's original voided); refused, the request is rejected with the
    platform's reason (a reversal's original issued again); still issuing, EInvoicePending
    (the job runs again). Idempotent: the row is locked and anything not waiting is skipped."""
    invoice = _waiting(invoice_id)
    if invoice is None:
        return "skipped"
    platform = einvoice_platform()
    language = invoice.unit.language or "zh"
    request = _platform_request(invoice)
    if invoice.einvoice_platform is None:
        with force_locale(language):
            outcome = platform.submit(request)
        if outcome.state == "refused":
            return _refused(invoice, outcome)
        invoice.einvoice_platform, invoice.platform_order_no = platform.name, request.order_no
        invoice.platform_serial = outcome.serial
        db.session.commit()
        invoice = _waiting(invoice_id)
        if invoice is None:
            return "skipped"
    with force_locale(language):
        outcome = platform.result(request)
    if outcome.state == "refused":
        return _refused(invoice, outcome)
    if outcome.state != "issued":
        if outcome.serial and not invoice.platform_serial:
            invoice.platform_serial = outcome.serial
        db.session.commit()
        raise EInvoicePending(request.order_no)
    return _issued(invoice, outcome)


def _issued(invoice: m.Invoice, outcome: Outcome) -> str:
    """The platform issued it: its files stored, the invoice issued with the platform's number
    and date; a reversal voids its original. The unit is told an ordinary one is ready."""
    if not outcome.number or "pdf" not in outcome.files:
        db.session.rollback()
        raise PlatformError(f"invoice {invoice.id}: issued without a number or a PDF")
    keys = {f"{kind}_key": storage.store(data, kind) for kind, data in outcome.files.items()}
    try:
        _one(move(SYSTEM, Inv, [invoice.id], INVOICE_MOVES["issue"], label=_label(),
                  commit=False,
                  values={"number": outcome.number, "issued_at": outcome.issued_at or now(),
                          "platform_serial": outcome.serial or invoice.platform_serial,
                          **keys}))
        if invoice.reversal_of_id is not None:
            _one(move(SYSTEM, Inv, [invoice.reversal_of_id], INVOICE_MOVES["reverse"],
                      label=_label(), commit=False,
                      reason=_("Red-letter reversal %(number)s issued by the invoicing "
                               "platform", number=outcome.number)))
            notification_ids: list[int] = []
        else:
            notification_ids = create_notices(invoice_notices([invoice.id], "issued"))
        db.session.commit()
    except Exception:
        db.session.rollback()
        for key in keys.values():
            storage.remove(key)
        raise
    enqueue_sends(notification_ids)
    return "done"


def _refused(invoice: m.Invoice, outcome: Outcome) -> str:
    """The platform refused it: the request is rejected with the platform's reason (the unit
    sees it and may ask again); a refused reversal leaves its original issued."""
    reason = _("The invoicing platform refused it: %(reason)s",
               reason=outcome.reason or "")[:500]
    _one(move(SYSTEM, Inv, [invoice.id], INVOICE_MOVES["reject"], label=_label(), commit=False,
              reason=reason, values={"reject_reason": reason}))
    if invoice.reversal_of_id is not None:
        _one(move(SYSTEM, Inv, [invoice.reversal_of_id], INVOICE_MOVES["keep"], label=_label(),
                  commit=False, reason=reason))
        notification_ids: list[int] = []
    else:
        notification_ids = create_notices(invoice_notices([invoice.id], "rejected"))
    db.session.commit()
    enqueue_sends(notification_ids)
    return "refused"


def invoice_file(invoice: m.Invoice, kind: str) -> str | None:
    """The storage key of the invoice's PDF, OFD or XML to serve, or None. In production only
    what the invoicing platform issued is served, never a PDF drawn here."""
    key = getattr(invoice, f"{kind}_key", None)
    if key and current_app.config.get("EINVOICE_PLATFORM_FILES_ONLY") and \
            getattr(invoice, "einvoice_platform", None) in (None, "sandbox"):
        return None
    return key


def regenerate(actor: Actor, invoice_ids: Iterable[int] | sa.Select) -> BatchResult:
    """Finance has the platform asked again for the e-invoices (and reversals) it has not
    issued yet, e.g. after the job gave up while the platform could not be reached."""
    _require_finance(actor)
    waiting = Inv.status.in_(INVOICE_MOVES["issue"].from_)
    rows = db.session.execute(scoped(
        sa.select(Inv.id, Inv.status, _label().label("label"),
                  sa.and_(Inv.kind == IK.e_normal, waiting).label("ok"))
        .where(Inv.id.in_(as_id_select(Inv, invoice_ids))), Inv, actor, WRITE)).all()
    result = BatchResult()
    for row in rows:
        if row.ok:
            result.done.append(row.id)
        else:
            result.refuse(row.id, row.label,
                          _l("only an e-invoice waiting for the platform can be made again"))
    record_many(actor, RECORD, [(rid, None) for rid in result.done], "regenerate")
    db.session.commit()
    schedule_pdfs(result.done)
    return result


# --------------------------------------------------------------------------------------------
# Paper special invoices: finance issues, mails; rejections
# --------------------------------------------------------------------------------------------

def issue_paper(actor: Actor, invoice_id: int, number: str) -> None:
    """Finance issued the paper special invoice and enters its printed number."""
    _require_finance(actor)
    number = re.sub(r"\s", "", number or "")
    if not PAPER_NUMBER.match(number):
        raise WorkflowError(_l("Enter the invoice number printed on the paper invoice (8 to "
                               "20 digits)."), 400)
    duplicate = _l("Invoice number %(number)s is already used by another invoice.",
                   number=number)
    if db.session.scalar(sa.select(sa.exists().where(Inv.number == number))):
        raise WorkflowError(duplicate)
    try:
        _one(move(actor, Inv, [invoice_id], INVOICE_MOVES["issue"], label=_label(),
                  commit=False,
                  checks=[(Inv.kind == IK.paper_special,
                           _l("e-invoices are issued by the system"))],
                  values={"number": number, "issued_at": now()}))
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise WorkflowError(duplicate) from None


def mail_paper(actor: Actor, invoice_id: int, carrier: str, tracking_no: str) -> None:
    """Finance mailed the issued paper invoice; the unit sees the carrier and tracking number
    and gets an e-mail."""
    _require_finance(actor)
    carrier, tracking_no = (carrier or "").strip(), re.sub(r"\s", "", tracking_no or "")
    if not carrier or not tracking_no:
        raise WorkflowError(_l("Enter the carrier and the tracking number."), 400)
    _one(move(actor, Inv, [invoice_id], INVOICE_MOVES["mail"], label=_label(), commit=False,
              checks=[(Inv.kind == IK.paper_special, _l("only a paper invoice is mailed"))],
              values={"carrier": carrier[:50], "tracking_no": tracking_no[:64]}))
    notification_ids = create_notices(invoice_notices([int(invoice_id)], "mailed"))
    db.session.commit()
    enqueue_sends(notification_ids)


def reject_requests(actor: Actor, invoice_ids: Iterable[int] | sa.Select,
                    reason: str | None) -> BatchResult:
    """Finance refuses requests (e.g. wrong buyer data), with a reason the unit sees; the unit
    may then ask again."""
    _require_finance(actor)
    reason = (reason or "").strip()
    if not reason:
        raise WorkflowError(_l("Enter the reason for rejecting the invoice request; the unit "
                               "will see it."), 400)
    result = move(actor, Inv, invoice_ids, INVOICE_MOVES["reject"], label=_label(),
                  reason=reason,
                  values={"reject_reason": reason}, commit=False)
    notification_ids = create_notices(invoice_notices(result.done, "rejected")) \
        if result.done else []
    db.session.commit()
    enqueue_sends(notification_ids)
    return result


# --------------------------------------------------------------------------------------------
# Voiding
# --------------------------------------------------------------------------------------------

def request_void(actor: Actor, invoice_ids: Iterable[int] | sa.Select,
                 reason: str | None = None) -> BatchResult:
    """The unit asks to void invoices. An e-invoice is reversed: a red-letter reversal is
    requested from the invoicing platform (by a job) and the original is voided once the
    platform issued it. A paper invoice waits for finance to confirm it came back."""
    if actor.unit_id is None:
        raise WorkflowError(_l("Only a unit account can do this."), 403)
    reason = (reason or "").strip()
    if not reason:
        raise WorkflowError(_l("Enter the reason for voiding the invoice."), 400)
    result = move(actor, Inv, invoice_ids, INVOICE_MOVES["request_void"],
                  label=_label(), reason=reason, commit=False,
                  checks=[(Inv.reversal_of_id.is_(None),
                           _l("a red-letter reversal cannot be voided"))])
    electronic = list(db.session.scalars(sa.select(Inv.id).where(
        Inv.id.in_(result.done), Inv.kind == IK.e_normal))) if result.done else []
    reversal_ids = _reverse(electronic, reason) if electronic else []
    db.session.commit()
    schedule_pdfs(reversal_ids)
    return result


def withdraw_requests(actor: Actor, invoice_ids: Iterable[int] | sa.Select) -> BatchResult:
    """The unit takes back its invoice requests that are not issued yet (e.g. a paper invoice
    finance has not printed): they are withdrawn, and the order may be invoiced again."""
    if actor.unit_id is None:
        raise WorkflowError(_l("Only a unit account can do this."), 403)
    result = move(actor, Inv, invoice_ids, INVOICE_MOVES["withdraw"], label=_label(),
                  commit=False)
    issued = set(db.session.scalars(sa.select(Inv.id).where(
        Inv.id.in_([r.record_id for r in result.refused]),
        Inv.status.in_(INVOICE_MOVES["request_void"].from_)))) if result.refused else set()
    for refusal in result.refused:
        if refusal.record_id in issued:
            refusal.reason = _l("it is already issued; ask to void it instead")
    db.session.commit()
    return result


def _reverse(invoice_ids: list[int], reason: str | None) -> list[int]:
    """Add a red-letter reversal request for each e-invoice (by the system): the platform
    issues it, then the original is voided (`make_pdf`)."""
    originals = db.session.scalars(sa.select(Inv).where(Inv.id.in_(invoice_ids))
                                   .order_by(Inv.id)).all()
    created_at = now()
    reversal_ids = list(db.session.scalars(sa.insert(Inv).returning(Inv.id), [
        {"order_id": o.order_id, "unit_id": o.unit_id, "kind": IK.e_normal,
         "status": IS.requested, "amount_fen": o.amount_fen,
         "buyer_name": o.buyer_name, "buyer_tax_id": o.buyer_tax_id,
         "buyer_address": o.buyer_address, "buyer_phone": o.buyer_phone,
         "buyer_bank": o.buyer_bank, "buyer_account": o.buyer_account,
         "buyer_locked": o.buyer_locked, "reversal_of_id": o.id,
         "created_at": created_at, "updated_at": created_at}
        for o in originals]))
    record_many(SYSTEM, RECORD, [(rid, None) for rid in reversal_ids], "reversal",
                to_state=IS.requested, reason=reason)
    return reversal_ids


def confirm_returned(actor: Actor, invoice_ids: Iterable[int] | sa.Select) -> BatchResult:
    """Finance confirms paper invoices came back: they are voided."""
    _require_finance(actor)
    return move(actor, Inv, invoice_ids, INVOICE_MOVES["void"], label=_label(),
                checks=[(Inv.kind == IK.paper_special,
                         _l("an e-invoice is voided by its reversal"))])


# --------------------------------------------------------------------------------------------
# Paper invoices in batches: finance uploads the list of what it printed or mailed
# --------------------------------------------------------------------------------------------

BATCH_FILE_FIELD = _l("List of paper invoices")
BATCH_EXTENSIONS = (".xlsx", ".xls", ".csv")
# What a batch does to each invoice it lists, and the columns its file must have.
BATCH_MODES = {"issue": (INVOICE_MOVES["issue"], ("reference", "number")),
               "mail": (INVOICE_MOVES["mail"], ("reference", "tracking_no"))}
# Each column by its header: the labels of finance's own invoice export (so an exported list,
# filled in, comes back as is) in either language, and the words finance commonly uses.
BATCH_COLUMNS = {
    "reference": ("order.number", ("订单号", "订单编号", "order number", "order no")),
    "number": ("invoice_number", ("发票号", "invoice no", "number")),
    "carrier": ("carrier", ("快递公司", "物流公司", "承运商")),
    "tracking_no": ("tracking_no", ("快递单号", "运单号", "物流单号", "tracking no")),
}
BATCH_REFUSALS = {
    "no_reference": _l("no order number"),
    "unknown": _l("no invoice request of this order"),
    "twice": _l("the list names this order more than once"),
    "e_invoice": _l("e-invoices are issued by the system"),
    "bad_number": _l("not an invoice number (8 to 20 digits)"),
    "number_twice": _l("the list gives this invoice number more than once"),
    "number_used": _l("this invoice number is already used by another invoice"),
    "no_tracking": _l("no tracking number"),
    "bad_tracking": _l("the tracking number is longer than 64 characters"),
    "no_carrier": _l("no carrier: add a carrier column or enter the carrier on the page"),
}
TRACKING_MAX = 64
CARRIER_MAX = 50


@dataclass
class BatchRow:
    """One row of an uploaded list, as the preview shows it: what it names, the invoice it
    reaches, and why it is refused (a reason of BATCH_REFUSALS, or the invoice's wrong state)."""

    row: int
    reference: str
    number: str = ""
    carrier: str = ""
    tracking_no: str = ""
    invoice_id: int | None = None
    unit_name: str = ""
    refusal: Any = None

    @property
    def applies(self) -> bool:
        return self.refusal is None


def _batch_refused(problem: Any) -> InputRefused:
    return InputRefused(_l("Check \"%(field)s\": %(problem)s Nothing was changed.",
                           field=BATCH_FILE_FIELD, problem=problem))


def _batch_cells(data: bytes, file_name: str) -> list[list[Any]]:
    """The file's cells, read as the bank statements are (xlsx, xls, CSV in UTF-8 or GBK)."""
    if not (file_name or "").lower().endswith(BATCH_EXTENSIONS):
        raise _batch_refused(_l("choose an Excel (.xlsx) or CSV file."))
    if not data:
        raise _batch_refused(_l("the file is empty."))
    try:
        return statements.read_rows(data, file_name)
    except WorkflowError:
        raise _batch_refused(_l("the file cannot be read: save it as Excel (.xlsx) or as CSV "
                                "(UTF-8 or GBK) and upload it again.")) from None


def _batch_header(rows: list[list[Any]], needed: tuple[str, ...]
                  ) -> tuple[int, dict[str, int]]:
    """The header row (the first with the columns the batch needs) and each column's index."""
    names: dict[str, str] = {}
    for column, (label_key, extra) in BATCH_COLUMNS.items():
        for language in ("zh", "en"):
            with force_locale(language):
                names[statements._norm_header(str(COLUMN_LABELS[label_key]))] = column
        names.update({statements._norm_header(word): column for word in extra})
    for index, row in enumerate(rows[:statements.HEADER_SCAN_ROWS]):
        columns: dict[str, int] = {}
        for position, cell in enumerate(row):
            column = names.get(statements._norm_header(cell))
            if column and column not in columns:
                columns[column] = position
        if all(c in columns for c in needed):
            return index, columns
    raise _batch_refused(_l("no header row naming the columns %(columns)s was found in its "
                            "first %(rows)d rows.", rows=statements.HEADER_SCAN_ROWS,
                            columns=", ".join(f"\u201c{_batch_label(c)}\u201d"
                                              for c in needed)))


def _batch_label(column: str) -> str:
    return str(COLUMN_LABELS[BATCH_COLUMNS[column][0]])


def batch_labels() -> dict[str, str]:
    """The columns' headers in the reader's language, for the upload page's instructions."""
    return {column: _batch_label(column) for column in BATCH_COLUMNS}


def plan_paper_batch(actor: Actor, mode: str, data: bytes, file_name: str,
                     carrier: str = "") -> list[BatchRow]:
    """Read an uploaded list of paper invoices to issue (order number and printed invoice
    number) or to mark mailed (order number, tracking number and carrier, or the carrier
    given for the whole list) and say for each row whether it applies or why not. Reads the
    invoices in two queries, whatever the length of the list; changes nothing."""
    _require_finance(actor)
    if mode not in BATCH_MODES:
        raise WorkflowError(_l("Choose what the list does."), 400)
    step, needed = BATCH_MODES[mode]
    cells = _batch_cells(data, file_name)
    header, columns = _batch_header(cells, needed)

    def cell(row: list[Any], column: str) -> str:
        i = columns.get(column)
        return statements._cell_text(row[i]) if i is not None and i < len(row) else ""

    carrier = (carrier or "").strip()
    rows = []
    for index in range(header + 1, len(cells)):
        raw = cells[index]
        if not any(statements._cell_text(c) for c in raw):
            continue
        rows.append(BatchRow(
            row=index + 1, reference=statements._norm_key(cell(raw, "reference")),
            number=re.sub(r"\s", "", cell(raw, "number")),
            carrier=(cell(raw, "carrier") or carrier)[:CARRIER_MAX],
            tracking_no=re.sub(r"\s", "", cell(raw, "tracking_no"))))
    _check_batch(actor, mode, step, rows)
    return rows


def _check_batch(actor: Actor, mode: str, step: Move, rows: list[BatchRow]) -> None:
    references = [r.reference for r in rows if r.reference]
    found = {}
    # The latest invoice of each order (a rejected or withdrawn request may precede it).
    for invoice in db.session.execute(scoped(
            sa.select(Inv.id, Inv.status, Inv.kind, Inv.number, m.Order.number.label("order"),
                      m.Unit.name.label("unit"))
            .join(m.Order, m.Order.id == Inv.order_id).join(m.Unit, m.Unit.id == Inv.unit_id)
            .where(m.Order.number.in_(set(references)), Inv.reversal_of_id.is_(None))
            .order_by(Inv.id), Inv, actor, WRITE)):
        found[invoice.order] = invoice
    numbers = [r.number for r in rows if r.number] if mode == "issue" else []
    used = set(db.session.scalars(sa.select(Inv.number).where(
        Inv.number.in_(set(numbers))))) if numbers else set()
    times, number_times = Counter(references), Counter(numbers)
    for row in rows:
        invoice = found.get(row.reference)
        if invoice is not None:
            row.invoice_id, row.unit_name = invoice.id, invoice.unit
        row.refusal = _row_refusal(mode, step, row, invoice, times, number_times, used)


def _row_refusal(mode: str, step: Move, row: BatchRow, invoice: Any, times: Counter,
                 number_times: Counter, used: set[str]) -> Any:
    if not row.reference:
        return BATCH_REFUSALS["no_reference"]
    if mode == "issue" and not PAPER_NUMBER.match(row.number):
        return BATCH_REFUSALS["bad_number"]
    if mode == "mail":
        if not row.tracking_no:
            return BATCH_REFUSALS["no_tracking"]
        if len(row.tracking_no) > TRACKING_MAX:
            return BATCH_REFUSALS["bad_tracking"]
        if not row.carrier:
            return BATCH_REFUSALS["no_carrier"]
    if invoice is None:
        return BATCH_REFUSALS["unknown"]
    if times[row.reference] > 1:
        return BATCH_REFUSALS["twice"]
    if invoice.kind is not IK.paper_special:
        return BATCH_REFUSALS["e_invoice"]
    if invoice.status not in step.from_:
        return wrong_state(invoice.status)
    if mode == "issue":
        if number_times[row.number] > 1:
            return BATCH_REFUSALS["number_twice"]
        if row.number in used:
            return BATCH_REFUSALS["number_used"]
    return None


def apply_paper_batch(actor: Actor, mode: str, rows: list[BatchRow],
                      file_name: str) -> BatchResult:
    """Issue, or mark mailed, every row of the list that applies, in one transaction through
    the invoice's moves (audited; a row another request moved meanwhile is refused with what
    happened to it); the rows the list refused are reported with their reason. Mailed units
    get their e-mail after the commit."""
    _require_finance(actor)
    step, _needed = BATCH_MODES[mode]
    ok = {r.invoice_id: r for r in rows if r.applies and r.invoice_id is not None}
    result = BatchResult()
    # Why: the audit trail says the move came from this list.
    reason = _("From the uploaded list %(file)s", file=(file_name or "")[:200])
    if ok:
        if mode == "issue":
            values: dict[str, Any] = {
                "number": sa.case({i: r.number for i, r in ok.items()}, value=Inv.id),
                "issued_at": now()}
        else:
            values = {"carrier": sa.case({i: r.carrier for i, r in ok.items()}, value=Inv.id),
                      "tracking_no": sa.case({i: r.tracking_no for i, r in ok.items()},
                                             value=Inv.id)}
        try:
            result = move(actor, Inv, list(ok), step, label=_label(), commit=False,
                          reason=reason, values=values,
                          checks=[(Inv.kind == IK.paper_special,
                                   BATCH_REFUSALS["e_invoice"])])
        except IntegrityError:
            # Another invoice took one of the numbers meanwhile: the list is refused whole.
            db.session.rollback()
            raise WorkflowError(_l("An invoice number of the list was used by another invoice "
                                   "meanwhile; nothing was changed. Upload the list again to "
                                   "see which.")) from None
    for row in rows:
        if not row.applies:
            result.refuse(row.invoice_id or 0, _batch_row_label(row), row.refusal)
    by_id = {r.invoice_id: r for r in rows}
    for refusal in result.refused:
        if refusal.record_id in ok:
            refusal.label = _batch_row_label(by_id[refusal.record_id])
    notification_ids = create_notices(invoice_notices(result.done, "mailed")) \
        if mode == "mail" and result.done else []
    db.session.commit()
    enqueue_sends(notification_ids)
    return result


def _batch_row_label(row: BatchRow) -> str:
    return _("row %(row)d, %(order)s", row=row.row, order=row.reference or "-")


# --------------------------------------------------------------------------------------------
# Notices
# --------------------------------------------------------------------------------------------

def invoice_notices(invoice_ids: list[int], event: str) -> list[Notice]:
    """E-mails to the units: an e-invoice is ready, a paper invoice was mailed, a request was
    rejected (one query; one notice per invoice and event)."""
    rows = db.session.execute(
        sa.select(Inv.id, Inv.number, Inv.amount_fen, Inv.carrier, Inv.tracking_no,
                  Inv.reject_reason, m.Order.number.label("order"),
                  m.Unit.id.label("unit_id"), m.Unit.name, m.Unit.language, m.Unit.email)
        .join(m.Order, m.Order.id == Inv.order_id).join(m.Unit, m.Unit.id == Inv.unit_id)
        .where(Inv.id.in_(invoice_ids))).all()
    notices = []
    for row in rows:
        def text(row: Any = row) -> tuple[str, str]:
            args = {"unit": row.name, "number": row.number or "", "order": row.order,
                    "amount": fmt_money(row.amount_fen), "carrier": row.carrier or "",
                    "tracking": row.tracking_no or "", "reason": row.reject_reason or ""}
            if event == "issued":
                return (_("Your CIIE e-invoice is ready"),
                        _("%(unit)s: e-invoice %(number)s for order %(order)s (%(amount)s) is "
                          "ready. Log in and open Invoices to download and print it.", **args))
            if event == "mailed":
                return (_("Your CIIE paper invoice was mailed"),
                        _("%(unit)s: paper invoice %(number)s for order %(order)s (%(amount)s) "
                          "was mailed by %(carrier)s, tracking number %(tracking)s.", **args))
            return (_("Your CIIE invoice request was rejected"),
                    _("%(unit)s: finance rejected your invoice request for order %(order)s: "
                      "%(reason)s You may ask again with corrected data.", **args))

        subject, body = render(row.language, text)
        notices.append(Notice(f"invoice-{event}:{row.id}", m.NotificationChannel.email,
                              row.unit_id, row.email or "", row.language, subject, body))
    return notices
