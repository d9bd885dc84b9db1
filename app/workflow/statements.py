"""Bank statements: finance imports the bank's CSV; each credit line is matched to an unpaid
order by the order number in its reference and the exact amount, and the transfer is confirmed.
Lines that match nothing stay for finance to match by hand."""
from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.dialects import postgresql, sqlite

from app import models as m
from app.extensions import db
from app.formatting import fmt_money, yuan_to_fen
from app.scoping.actor import SYSTEM, Actor
from app.workflow.audit import record
from app.workflow.errors import BatchResult, WorkflowError
from app.workflow.notices import create_notices, enqueue_sends
from app.workflow.numbers import reserve
from app.workflow.payments import PAYMENT_MOVES, confirm_payments, receipt_notices
from app.workflow.transitions import Move, move, table

ORDER_NUMBER = re.compile(r"O\d{10}")
COLUMNS = ("date", "amount", "reference", "payer_name", "payer_account")
LS = m.StatementLineStatus
# A statement line's one move: matched to the payment it confirms.
LINE_MOVES = table({"match": Move(from_={LS.unmatched}, to=LS.matched)})


@dataclass
class ImportReport:
    lines: int
    new: int
    matched: int


def _credit_fen(text: str) -> int:
    """A statement's amount (thousands separators allowed) as fen; only credits are read."""
    fen = yuan_to_fen(text.replace(",", "").strip())
    if fen <= 0:
        raise ValueError(text)
    return fen


def parse_statement(data: bytes) -> list[dict]:
    """CSV with a header: date (YYYY-MM-DD), amount (yuan), reference, payer_name,
    payer_account. Only credits (positive amounts) matter; a bad line refuses the file."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("gb18030")
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or [c.strip() for c in reader.fieldnames[:5]] != list(COLUMNS):
        raise WorkflowError(_l("The statement needs the columns: %(columns)s.",
                               columns=", ".join(COLUMNS)), 400)
    lines = []
    for number, row in enumerate(reader, start=2):
        try:
            lines.append({"line_no": number, "booked_on": date.fromisoformat(row["date"].strip()),
                          "amount_fen": _credit_fen(row["amount"]),
                          "reference": (row["reference"] or "").strip()[:200],
                          "payer_name": (row["payer_name"] or "").strip()[:200] or None,
                          "payer_account": (row["payer_account"] or "").strip()[:64] or None})
        except (ValueError, KeyError, AttributeError):
            raise WorkflowError(_l("Line %(line)d of the statement cannot be read; nothing was "
                                   "imported.", line=number), 400) from None
    return lines


def import_statement(actor: Actor, data: bytes) -> ImportReport:
    """Store the statement's lines (a file imported twice adds nothing) and match them."""
    lines = parse_statement(data)
    file_hash = hashlib.sha256(data).hexdigest()
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    new_ids = list(db.session.scalars(
        dialect.insert(m.BankStatementLine).values(
            [{**line, "file_hash": file_hash, "imported_by_id": actor.user_id,
              "status": LS.unmatched} for line in lines])
        .on_conflict_do_nothing().returning(m.BankStatementLine.id))) if lines else []
    record(actor, "bank_statement", 0, "import",
           detail={"file_hash": file_hash, "lines": len(lines), "new": len(new_ids)})
    matched = _match(actor, new_ids)
    return ImportReport(lines=len(lines), new=len(new_ids), matched=matched.done_count)


def _match(actor: Actor, line_ids: list[int], order_number: str | None = None) -> BatchResult:
    """Match lines to unpaid orders (by the number in the reference, or the one given) with
    the same amount: confirm the order's declared transfer, or book one from the line."""
    if not line_ids:
        return BatchResult()
    L = m.BankStatementLine
    lines = db.session.scalars(sa.select(L).where(L.id.in_(line_ids),
                                                  L.status.in_(LINE_MOVES["match"].from_))
                                   ).all()
    wanted = {}
    for line in lines:
        found = [order_number] if order_number else ORDER_NUMBER.findall(line.reference)
        if len(set(found)) == 1:
            wanted[line.id] = found[0]
    orders = {o.number: o for o in db.session.scalars(sa.select(m.Order).where(
        m.Order.number.in_(set(wanted.values())), m.Order.status == m.OrderStatus.pending))}
    pending = {p.order_id: p for p in db.session.scalars(sa.select(m.Payment).where(
        m.Payment.order_id.in_([o.id for o in orders.values()]),
        m.Payment.channel == m.PaymentChannel.transfer,
        m.Payment.status == m.PaymentStatus.pending))}
    to_confirm: dict[int, m.BankStatementLine] = {}
    used_orders: set[int] = set()
    for line in lines:
        order = orders.get(wanted.get(line.id, ""))
        # One line pays one order: a second line for the same order waits for finance.
        if order is None or order.amount_fen != line.amount_fen or order.id in used_orders:
            continue
        used_orders.add(order.id)
        payment = pending.get(order.id)
        if payment is None:
            # Money arrived without a declaration: the statement line is the voucher.
            payment = m.Payment(
                number=f"P{order.edition.start_date.year}{reserve('payment', 1)[0]:06d}",
                order_id=order.id, channel=m.PaymentChannel.transfer,
                status=m.PaymentStatus.pending, amount_fen=line.amount_fen,
                payer_name=line.payer_name, payer_account=line.payer_account,
                remitted_on=line.booked_on)
            db.session.add(payment)
            db.session.flush()
            pending[order.id] = payment
        to_confirm[payment.id] = line
    result = confirm_payments(actor, list(to_confirm), PAYMENT_MOVES["statement_match"])
    paid_by = {to_confirm[pid].id: pid for pid in result.done}
    if paid_by:
        # The lines follow the payments they confirmed (already authorised: system scope).
        move(actor, L, list(paid_by), LINE_MOVES["match"], label=L.reference,
             values={"payment_id": sa.case(paid_by, value=L.id)}, commit=False,
             scope_actor=SYSTEM)
    notification_ids = create_notices(receipt_notices(result.done)) if result.done else []
    db.session.commit()
    enqueue_sends(notification_ids)
    return result


def match_line(actor: Actor, line_id: int, order_number: str) -> None:
    """Finance matches one line by hand to an order number."""
    order_number = (order_number or "").strip().upper()
    line = db.session.get(m.BankStatementLine, line_id)
    if line is None:
        raise WorkflowError(_l("No such statement line."), 404)
    if line.status not in LINE_MOVES["match"].from_:
        raise WorkflowError(_l("This line is already matched."))
    order = db.session.scalars(sa.select(m.Order).where(m.Order.number == order_number)
                               ).one_or_none()
    if order is None:
        raise WorkflowError(_l("No order has the number %(number)s.", number=order_number), 404)
    if order.status is not m.OrderStatus.pending:
        raise WorkflowError(_l("Order %(number)s is not waiting for payment.",
                               number=order_number))
    if order.amount_fen != line.amount_fen:
        raise WorkflowError(_l("The amounts differ: the order is for %(order)s, the line "
                               "credits %(line)s.", order=fmt_money(order.amount_fen),
                               line=fmt_money(line.amount_fen)))
    if not _match(actor, [line.id], order_number).done:
        raise WorkflowError(_l("The order was paid or changed meanwhile; reload the page."))
