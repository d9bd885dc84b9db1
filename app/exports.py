"""Excel exports of a list's filtered rows, streamed from a server-side cursor into a workbook
(rust_xlsxwriter in constant-memory mode: rows go to disk as they are written).

The delegation's person and unit lists and finance's payments, transfers, refunds, statement
lines and invoices are declared here (rows, search columns, formatters, labels); their views
show them, so an export has exactly the rows and cells its list shows."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable

import rvgsrust_xlsxwriter as xlsx
import sqlalchemy as sa
from flask_appbuilder.models.sqla.filters import FilterEqual, FilterEqualFunction
from flask_babel import force_locale
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import aliased

from app import models as m
from app import storage
from app.clock import SHANGHAI, now
from app.extensions import db
from app.formatting import fen_to_yuan, fmt_money, fmt_value
from app.labels import COLUMN_LABELS, MASKED, fmt_entry_days
from app.scoping.actor import Actor, acting_as
from app.scoping.interface import ScopedInterface, filtered_ids
from app.tasks import operation
from app.workflow.editions import current_edition

Progress = Callable[[int, int], None]
# Rows fetched per round trip of the server-side cursor, and how often progress is written.
CHUNK = 1000
PROGRESS_EVERY = 2000


@dataclass(frozen=True)
class Column:
    """One column of an export: the view's column name (its header and formatter) and the
    SQL expression selected for it."""

    key: str
    expr: Any
    width: int = 16
    # Few distinct values (enums, flags, delegations, entry days): format each value once.
    memo: bool = False
    # ID and mobile numbers: the view must mask them, or the export refuses to run.
    pii: bool = False
    # Integer fen written as a number in yuan (two decimals), so the sheet can sum it.
    money: bool = False


@dataclass(frozen=True)
class Export:
    """What one list exports: the list (its model, title, base filters, search columns and
    the formatters of its cells), a file name, and its columns with the SELECT (joins included)
    that reads them, in a language."""

    model: type
    title: Any
    base_filters: list[list[Any]]
    search_columns: list[str]
    formatters_columns: dict[str, Callable[[Any], Any]]
    name: str
    query: Callable[[str], tuple[list[Column], sa.Select]]
    # Headers the list labels its own way (else app.labels.COLUMN_LABELS); its view uses them.
    label_columns: dict[str, Any] = field(default_factory=dict)
    # The list's own order by id (the transfer queue lists the oldest first).
    ascending: bool = False


def _name(delegation: Any, language: str) -> Any:
    return delegation.name_en if language == "en" else delegation.name_zh


def _units(language: str) -> tuple[list[Column], sa.Select]:
    UR, U = m.UnitRegistration, m.Unit
    delegation, sub = aliased(m.Delegation), aliased(m.Delegation)
    columns = [
        Column("unit.name", U.name, 36),
        Column("unit.uscc", U.uscc, 22),
        Column("unit.region", U.region, 10, memo=True),
        Column("unit.category", U.category, 18, memo=True),
        Column("delegation", _name(delegation, language), 24, memo=True),
        Column("sub_delegation", _name(sub, language), 24, memo=True),
        Column("status", UR.status, 14, memo=True),
        Column("unit_number", UR.unit_number, 12),
        Column("contact_name", UR.contact_name),
        Column("contact_mobile", UR.contact_mobile, pii=True),
        Column("submitted_at", UR.submitted_at, 18),
        Column("reviewed_at", UR.reviewed_at, 18),
    ]
    stmt = (sa.select(*(c.expr for c in columns)).select_from(UR)
            .join(U, U.id == UR.unit_id)
            .outerjoin(delegation, delegation.id == UR.delegation_id)
            .outerjoin(sub, sub.id == UR.sub_delegation_id))
    return columns, stmt


def _persons(language: str) -> tuple[list[Column], sa.Select]:
    PR, P, UR, U = m.PersonRegistration, m.Person, m.UnitRegistration, m.Unit
    delegation, sub = aliased(m.Delegation), aliased(m.Delegation)
    columns = [
        Column("person.name", P.name, 14),
        Column("person.gender", P.gender, 8, memo=True),
        Column("unit_registration.unit.name", U.name, 36),
        Column("unit_registration.delegation", _name(delegation, language), 24, memo=True),
        Column("unit_registration.sub_delegation", _name(sub, language), 24, memo=True),
        Column("person.id_type", P.id_type, 18, memo=True),
        Column("person.id_number", P.id_number, 22, pii=True),
        Column("person.mobile", P.mobile, pii=True),
        Column("person.job_title", P.job_title),
        Column("tag", PR.tag, 14, memo=True),
        Column("entry_days", PR.entry_days, 24, memo=True),
        Column("status", PR.status, 18, memo=True),
        Column("is_reuse", PR.is_reuse, 10, memo=True),
        Column("submitted_at", PR.submitted_at, 18),
    ]
    stmt = (sa.select(*(c.expr for c in columns)).select_from(PR)
            .join(P, P.id == PR.person_id)
            .join(UR, UR.id == PR.unit_registration_id)
            .join(U, U.id == UR.unit_id)
            .outerjoin(delegation, delegation.id == UR.delegation_id)
            .outerjoin(sub, sub.id == UR.sub_delegation_id))
    return columns, stmt


def _invoices(language: str) -> tuple[list[Column], sa.Select]:
    """Finance's invoice list: a red-letter reversal is its own row, typed as such, with its
    negative amount and the number of the invoice it reverses."""
    Inv, Ord, U = m.Invoice, m.Order, m.Unit
    reversed_invoice = aliased(m.Invoice)
    columns = [
        Column("invoice_number", Inv.number, 24),
        Column("order.number", Ord.number, 14),
        Column("unit.name", U.name, 36),
        Column("invoice_type", sa.case((Inv.reversal_of_id.is_not(None), RED_LETTER),
                                       else_=Inv.kind), 22, memo=True),
        Column("status", Inv.status, 12, memo=True),
        Column("signed_amount_fen", Inv.signed_amount_fen, 14),
        Column("buyer_name", Inv.buyer_name, 36),
        Column("buyer_tax_id", Inv.buyer_tax_id, 22),
        Column("created_at", Inv.created_at, 18),
        Column("issued_at", Inv.issued_at, 18),
        Column("carrier", Inv.carrier, 12),
        Column("tracking_no", Inv.tracking_no, 18),
        Column("reversal_of.number", reversed_invoice.number, 24),
    ]
    stmt = (sa.select(*(c.expr for c in columns)).select_from(Inv)
            .join(Ord, Ord.id == Inv.order_id).join(U, U.id == Inv.unit_id)
            .outerjoin(reversed_invoice, reversed_invoice.id == Inv.reversal_of_id))
    return columns, stmt


def _payments(language: str) -> tuple[list[Column], sa.Select]:
    P, Ord = m.Payment, m.Order
    columns = [
        Column("number", P.number, 16),
        Column("order.number", Ord.number, 14),
        Column("channel", P.channel, 14, memo=True),
        Column("status", P.status, 14, memo=True),
        Column("amount_fen", P.amount_fen, 12, money=True),
        Column("refunded_fen", P.refunded_fen, 12, money=True),
        Column("payer_name", P.payer_name, 36),
        Column("provider_trade_no", P.provider_trade_no, 28),
        Column("confirmed_at", P.confirmed_at, 18),
    ]
    stmt = sa.select(*(c.expr for c in columns)).select_from(P).join(Ord, Ord.id == P.order_id)
    return columns, stmt


def _transfers(language: str) -> tuple[list[Column], sa.Select]:
    """The bank-transfer queue as listed, but the voucher (a file, opened from the list)."""
    P, Ord, U = m.Payment, m.Order, m.Unit
    columns = [
        Column("number", P.number, 16),
        Column("order.number", Ord.number, 14),
        Column("order.unit.name", U.name, 36),
        Column("status", P.status, 14, memo=True),
        Column("amount_fen", P.amount_fen, 12, money=True),
        Column("payer_name", P.payer_name, 36),
        Column("payer_bank", P.payer_bank, 28),
        Column("payer_account", P.payer_account, 24),
        Column("remitted_on", P.remitted_on, 12),
        Column("reject_reason", P.reject_reason, 36),
    ]
    stmt = (sa.select(*(c.expr for c in columns)).select_from(P)
            .join(Ord, Ord.id == P.order_id).join(U, U.id == Ord.unit_id))
    return columns, stmt


def _refunds(language: str) -> tuple[list[Column], sa.Select]:
    R, P, U = m.Refund, m.Payment, m.Unit
    columns = [
        Column("number", R.number, 16),
        Column("unit.name", U.name, 36),
        Column("payment.number", P.number, 16),
        Column("payment.channel", P.channel, 14, memo=True),
        Column("route", R.route, 18, memo=True),
        Column("amount_fen", R.amount_fen, 12, money=True),
        Column("status", R.status, 14, memo=True),
        Column("attempts", R.attempts, 8),
        Column("created_at", R.created_at, 18),
        Column("done_at", R.done_at, 18),
    ]
    stmt = (sa.select(*(c.expr for c in columns)).select_from(R)
            .join(P, P.id == R.payment_id).join(U, U.id == R.unit_id))
    return columns, stmt


def _statement_lines(language: str) -> tuple[list[Column], sa.Select]:
    L, Ord, P = m.BankStatementLine, m.Order, m.Payment
    columns = [
        Column("id", L.id, 10),
        Column("booked_on", L.booked_on, 12),
        Column("amount_fen", L.amount_fen, 12, money=True),
        Column("reference", L.reference, 36),
        Column("payer_name", L.payer_name, 36),
        Column("payer_account", L.payer_account, 24),
        Column("serial", L.serial, 24),
        Column("status", L.status, 14, memo=True),
        Column("match_method", L.match_method, 16, memo=True),
        Column("order.number", Ord.number, 14),
        Column("payment.number", P.number, 16),
    ]
    stmt = (sa.select(*(c.expr for c in columns)).select_from(L)
            .outerjoin(Ord, Ord.id == L.order_id).outerjoin(P, P.id == L.payment_id))
    return columns, stmt


# The invoice type of a reversal in the export's SELECT (its kind otherwise).
RED_LETTER = "red_letter"


def fmt_invoice_type(value: Any) -> Any:
    return m.RED_LETTER_LABEL if value == RED_LETTER else fmt_value(m.InvoiceKind(value))


def fmt_signed_money(fen: int | None) -> str:
    """An amount in yuan with its sign before the currency: -¥200.00 for a reversal."""
    if fen is None:
        return ""
    return ("-" if fen < 0 else "") + fmt_money(abs(fen))


# Characters XML 1.0 cannot hold (tab, line feed and carriage return it can).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# The most characters an Excel cell holds.
MAX_CELL_TEXT = 32767


def _cell_text(text: str) -> str | None:
    """A text cell: characters XML cannot hold dropped, cut to what a cell holds, empty as a
    blank cell. The writer stores every str as text, never as a formula, so a unit named
    "=HYPERLINK(…)" stays text."""
    if not text.isprintable():
        text = _CONTROL.sub("", text)
    return text[:MAX_CELL_TEXT] or None


def open_sheet(workbook: xlsx.Workbook, title: str, headers: list[str], widths: list[int],
               money: Iterable[int] = ()) -> xlsx.Worksheet:
    """A worksheet written as a stream (rows in increasing order, none kept in memory): bold
    header row frozen at the top, column widths, the `money` columns as numbers in yuan."""
    sheet = workbook.add_worksheet(title, constant_memory=True)
    for index, width in enumerate(widths):
        sheet.set_column_width(index, width)
    yuan = workbook.add_format().set_num_format("#,##0.00")
    for index in money:
        sheet.set_column_format(index, yuan)
    sheet.freeze_panes(1, 0)
    sheet.write_row(0, 0, [_cell_text(text) for text in headers],
                    workbook.add_format().set_bold())
    return sheet


def _money(fen: int | None) -> Any:
    return None if fen is None else fen_to_yuan(fen)


def _text(value: str | None) -> str | None:
    return None if value is None else _cell_text(value)


def _beijing_minutes(value: datetime | None) -> str | None:
    """fmt_datetime's Beijing time to the minute (2022-09-15 10:00), without strftime: the
    export formats one for every row."""
    return None if value is None else value.astimezone(SHANGHAI).isoformat(" ", "minutes")[:16]


def _python_type(column: Column) -> type | None:
    sql_type = column.expr.type
    # A TypeDecorator (AwareDateTime) answers `object`: its stored type says what is read.
    sql_type = getattr(sql_type, "impl_instance", sql_type)
    try:
        return sql_type.python_type
    except NotImplementedError:
        return None


def _formatter(spec: Export, column: Column) -> Callable[[Any], Any]:
    """The list's own formatter for the column (labels, Beijing time, masks) as the cell's
    value; money as yuan. Picked once per column: text is written as read, times go straight
    to Beijing time, and few-valued columns format each value once."""
    if column.money:
        return _money
    fmt = spec.formatters_columns.get(column.key)
    if column.pii and fmt not in MASKED.values():
        raise RuntimeError(f"{column.key} would be exported unmasked")
    if fmt is None and not column.memo:
        python_type = _python_type(column)
        if python_type is str:
            return _text
        if python_type is datetime:
            return _beijing_minutes
    fmt = fmt or fmt_value
    if not column.memo:
        return lambda value: _cell_text(str(fmt(value)))
    cache: dict[Any, str | None] = {}

    def memoised(value: Any) -> str | None:
        if value not in cache:
            cache[value] = _cell_text(str(fmt(value)))
        return cache[value]

    return memoised


def write_export(spec: Export, actor: Actor, params: dict, progress: Progress) -> dict:
    """Write the rows the view lists for the task's filters, in the actor's scope, to an xlsx
    file (a chunk of rows in memory at a time); returns the task report naming the file."""
    language = "en" if params.get("language") == "en" else "zh"
    model = spec.model
    columns, select = spec.query(language)
    with acting_as(actor), force_locale(language):
        ids = filtered_ids(ScopedInterface(model), spec.search_columns, spec.base_filters,
                           params.get("filters") or [])
        total = db.session.scalar(sa.select(sa.func.count()).select_from(ids.subquery()))
        stmt = select.where(model.id.in_(ids)).order_by(
            model.id.asc() if spec.ascending else model.id.desc())
        formatters = [_formatter(spec, c) for c in columns]
        key = storage.new_key("xlsx")
        workbook = xlsx.Workbook(storage.path_of(key))
        sheet = open_sheet(
            workbook, str(spec.title),
            [str(spec.label_columns.get(c.key) or COLUMN_LABELS.get(c.key, c.key))
             for c in columns],
            [c.width for c in columns], [i for i, c in enumerate(columns) if c.money])
        done = 0
        chunk: list[list[Any]] = []
        try:
            for row in db.session.execute(stmt.execution_options(yield_per=CHUNK)):
                chunk.append([fmt(value) for fmt, value in zip(formatters, row, strict=True)])
                done += 1
                if len(chunk) == CHUNK:
                    sheet.write_rows(done - CHUNK + 1, 0, chunk)
                    chunk = []
                if done % PROGRESS_EVERY == 0:
                    progress(done, total)
            sheet.write_rows(done - len(chunk) + 1, 0, chunk)
            workbook.close()
        except BaseException:
            storage.remove(key)
            raise
        # End the read transaction now: a worker would otherwise hold it until its next job.
        db.session.rollback()
    stamp = now().astimezone(SHANGHAI).strftime("%Y%m%d-%H%M")
    return {"done": done, "refused": [], "file_key": key,
            "filename": f"ciie-{spec.name}-{stamp}.xlsx"}


# Both lists show the current edition.
_CURRENT_EDITION = [["edition_id", FilterEqualFunction, lambda: current_edition().id]]

UNITS = Export(
    m.UnitRegistration, _l("Units"), _CURRENT_EDITION,
    search_columns=["status", "unit_name", "unit_uscc", "unit_category", "unit_region",
                    "delegation", "sub_delegation", "submitted_at"],
    formatters_columns={"contact_mobile": MASKED["contact_mobile"]},
    name="units", query=_units)
PERSONS = Export(
    m.PersonRegistration, _l("Persons"), _CURRENT_EDITION,
    search_columns=["status", "tag", "is_reuse", "person_name", "unit_name",
                    "unit_delegation_id", "unit_sub_delegation_id", "submitted_at",
                    "person_id_search", "person_mobile_search"],
    formatters_columns={"person.id_number": MASKED["person.id_number"],
                        "person.mobile": MASKED["person.mobile"],
                        "entry_days": fmt_entry_days},
    name="persons", query=_persons)


INVOICES = Export(
    m.Invoice, _l("Invoices"), [],
    search_columns=["status", "kind", "number", "buyer_name", "buyer_tax_id", "buyer_locked",
                    "tracking_no", "created_at", "issued_at"],
    formatters_columns={"invoice_type": fmt_invoice_type,
                        "signed_amount_fen": fmt_signed_money},
    name="invoices", query=_invoices)


PAYMENTS = Export(
    m.Payment, _l("Payments"), [],
    search_columns=["number", "channel", "status", "provider_trade_no", "confirmed_at"],
    formatters_columns={}, name="payments", query=_payments,
    label_columns={"provider_trade_no": _l("Provider's trade number")})
TRANSFERS = Export(
    m.Payment, _l("Bank transfers"), [["channel", FilterEqual, m.PaymentChannel.transfer]],
    search_columns=["status", "number", "payer_name", "remitted_on"],
    formatters_columns={}, name="transfers", query=_transfers, ascending=True)
REFUNDS = Export(
    m.Refund, _l("Refunds"), [],
    search_columns=["status", "route", "number", "created_at"],
    formatters_columns={}, name="refunds", query=_refunds,
    label_columns={"payment.number": _l("Payment record"), "payment.channel": _l("Payment method"),
                   "done_at": _l("Refunded at")})
STATEMENT_LINES = Export(
    m.BankStatementLine, _l("Bank statements"), [],
    search_columns=["status", "reference", "payer_name", "serial", "booked_on"],
    formatters_columns={}, name="statements", query=_statement_lines,
    label_columns={"id": _l("Line"), "booked_on": _l("Booked on"), "reference": _l("Memo"),
                   "serial": _l("Bank serial number"), "match_method": _l("Matched by"),
                   "order.number": _l("Order"), "payment.number": _l("Payment record")})


@operation("export_payments")
def export_payments(actor: Actor, params: dict, progress: Progress) -> dict:
    return write_export(PAYMENTS, actor, params, progress)


@operation("export_transfers")
def export_transfers(actor: Actor, params: dict, progress: Progress) -> dict:
    return write_export(TRANSFERS, actor, params, progress)


@operation("export_refunds")
def export_refunds(actor: Actor, params: dict, progress: Progress) -> dict:
    return write_export(REFUNDS, actor, params, progress)


@operation("export_statements")
def export_statements(actor: Actor, params: dict, progress: Progress) -> dict:
    return write_export(STATEMENT_LINES, actor, params, progress)


@operation("export_invoices")
def export_invoices(actor: Actor, params: dict, progress: Progress) -> dict:
    return write_export(INVOICES, actor, params, progress)


@operation("export_units")
def export_units(actor: Actor, params: dict, progress: Progress) -> dict:
    return write_export(UNITS, actor, params, progress)


@operation("export_persons")
def export_persons(actor: Actor, params: dict, progress: Progress) -> dict:
    return write_export(PERSONS, actor, params, progress)
