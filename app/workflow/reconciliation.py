"""Daily reconciliation for finance: payments by channel, refunds, invoices issued and voided,
per Beijing day, with totals that match the records (a few GROUP BY queries)."""
from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from flask_babel import gettext as _
from openpyxl import Workbook

from app import models as m
from app.clock import SHANGHAI
from app.extensions import db
from app.formatting import fen_to_yuan


@dataclass
class Day:
    day: date
    payments: dict[m.PaymentChannel, list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0]))   # channel -> [count, fen]
    refunds: list[int] = field(default_factory=lambda: [0, 0])
    invoices_issued: list[int] = field(default_factory=lambda: [0, 0])
    invoices_voided: list[int] = field(default_factory=lambda: [0, 0])

    @property
    def paid_fen(self) -> int:
        return sum(fen for _count, fen in self.payments.values())

    @property
    def net_fen(self) -> int:
        return self.paid_fen - self.refunds[1]


@dataclass
class Table:
    days: list[Day]
    total: Day


def shanghai_day(column: Any) -> Any:
    """The Beijing calendar day of a UTC timestamp column, on either database."""
    if db.session.get_bind().dialect.name == "postgresql":
        return sa.cast(sa.func.timezone("Asia/Shanghai", column), sa.Date)
    return sa.func.date(column, "+8 hours")


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def daily(since: date, until: date) -> Table:
    start = datetime.combine(since, time.min, SHANGHAI)
    end = datetime.combine(until + timedelta(days=1), time.min, SHANGHAI)
    days = {since + timedelta(days=i): Day(since + timedelta(days=i))
            for i in range((until - since).days + 1)}
    total = Day(until)

    def add(rows, pick):
        for row in rows:
            for target in (days[_as_date(row.day)], total):
                bucket = pick(target, row)
                bucket[0] += row.count
                bucket[1] += int(row.fen or 0)

    P, R, Inv = m.Payment, m.Refund, m.Invoice
    day = shanghai_day(P.confirmed_at)
    add(db.session.execute(
        sa.select(day.label("day"), P.channel, sa.func.count().label("count"),
                  sa.func.sum(P.amount_fen).label("fen"))
        .where(P.status == m.PaymentStatus.confirmed, P.confirmed_at >= start,
               P.confirmed_at < end).group_by(day, P.channel)).all(),
        lambda target, row: target.payments[row.channel])
    day = shanghai_day(R.done_at)
    add(db.session.execute(
        sa.select(day.label("day"), sa.func.count().label("count"),
                  sa.func.sum(R.amount_fen).label("fen"))
        .where(R.status == m.RefundStatus.done, R.done_at >= start, R.done_at < end)
        .group_by(day)).all(), lambda target, row: target.refunds)
    day = shanghai_day(Inv.issued_at)
    add(db.session.execute(
        sa.select(day.label("day"), sa.func.count().label("count"),
                  sa.func.sum(Inv.amount_fen).label("fen"))
        .where(Inv.reversal_of_id.is_(None), Inv.issued_at >= start, Inv.issued_at < end)
        .group_by(day)).all(), lambda target, row: target.invoices_issued)
    day = shanghai_day(Inv.updated_at)
    add(db.session.execute(
        sa.select(day.label("day"), sa.func.count().label("count"),
                  sa.func.sum(Inv.amount_fen).label("fen"))
        .where(Inv.reversal_of_id.is_(None), Inv.status == m.InvoiceStatus.voided,
               Inv.updated_at >= start, Inv.updated_at < end)
        .group_by(day)).all(), lambda target, row: target.invoices_voided)
    return Table(days=list(days.values()), total=total)


def to_excel(table: Table) -> bytes:
    """The reconciliation table as an .xlsx file, amounts in yuan (exact decimals)."""
    channels = list(m.PaymentChannel)
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(_("Reconciliation"))
    ws.append([_("Day")] + [f"{c.label} ({_('count')})" for c in channels]
              + [f"{c.label} ({_('yuan')})" for c in channels]
              + [_("Refunds"), _("Refunded (yuan)"), _("Invoices issued"),
                 _("Invoiced (yuan)"), _("Invoices voided"), _("Voided (yuan)"),
                 _("Net received (yuan)")])
    for row in [*table.days, table.total]:
        label = row.day.isoformat() if row is not table.total else _("Total")
        ws.append([label] + [row.payments[c][0] for c in channels]
                  + [fen_to_yuan(row.payments[c][1]) for c in channels]
                  + [row.refunds[0], fen_to_yuan(row.refunds[1]), row.invoices_issued[0],
                     fen_to_yuan(row.invoices_issued[1]), row.invoices_voided[0],
                     fen_to_yuan(row.invoices_voided[1]), fen_to_yuan(row.net_fen)])
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()
