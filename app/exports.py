"""Excel exports of a list's filtered rows, streamed from a server-side cursor into a workbook.

The delegation's person and unit lists are declared here (rows, search columns, formatters);
their views show them, so an export has exactly the rows and cells its list shows."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import sqlalchemy as sa
from flask_appbuilder.models.sqla.filters import FilterEqualFunction
from flask_babel import force_locale
from flask_babel import lazy_gettext as _l
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from sqlalchemy.orm import aliased

from app import models as m
from app import storage
from app.clock import SHANGHAI, now
from app.extensions import db
from app.formatting import fmt_money, fmt_value
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


# The invoice type of a reversal in the export's SELECT (its kind otherwise).
RED_LETTER = "red_letter"


def fmt_invoice_type(value: Any) -> Any:
    return m.RED_LETTER_LABEL if value == RED_LETTER else fmt_value(m.InvoiceKind(value))


def fmt_signed_money(fen: int | None) -> str:
    """An amount in yuan with its sign before the currency: -¥200.00 for a reversal."""
    if fen is None:
        return ""
    return ("-" if fen < 0 else "") + fmt_money(abs(fen))


def _cell_text(ws: Any, text: str) -> Any:
    """A text cell: characters XML cannot hold dropped, and never read as a formula (a unit
    named "=HYPERLINK(…)" must stay text)."""
    text = ILLEGAL_CHARACTERS_RE.sub("", text)
    if text.startswith("="):
        cell = WriteOnlyCell(ws, value=text)
        cell.data_type = "s"
        return cell
    return text


def _header_cell(ws: Any, text: str) -> WriteOnlyCell:
    cell = WriteOnlyCell(ws, value=text)
    cell.font = Font(bold=True)
    return cell


def _formatter(spec: Export, column: Column) -> Callable[[Any], str]:
    """The list's own formatter for the column (labels, Beijing time, masks)."""
    fmt = spec.formatters_columns.get(column.key, fmt_value)
    if column.pii and fmt not in MASKED.values():
        raise RuntimeError(f"{column.key} would be exported unmasked")
    if not column.memo:
        return lambda value: str(fmt(value))
    cache: dict[Any, str] = {}

    def memoised(value: Any) -> str:
        if value not in cache:
            cache[value] = str(fmt(value))
        return cache[value]

    return memoised


def write_export(spec: Export, actor: Actor, params: dict, progress: Progress) -> dict:
    """Write the rows the view lists for the task's filters, in the actor's scope, to an xlsx
    file (one row in memory at a time); returns the task report naming the file."""
    language = "en" if params.get("language") == "en" else "zh"
    model = spec.model
    columns, select = spec.query(language)
    with acting_as(actor), force_locale(language):
        ids = filtered_ids(ScopedInterface(model), spec.search_columns, spec.base_filters,
                           params.get("filters") or [])
        total = db.session.scalar(sa.select(sa.func.count()).select_from(ids.subquery()))
        stmt = select.where(model.id.in_(ids)).order_by(model.id.desc())
        formatters = [_formatter(spec, c) for c in columns]
        workbook = Workbook(write_only=True)
        sheet = workbook.create_sheet(title=str(spec.title))
        for index, column in enumerate(columns, start=1):
            sheet.column_dimensions[get_column_letter(index)].width = column.width
        sheet.freeze_panes = "A2"
        sheet.append([_header_cell(sheet, str(COLUMN_LABELS.get(c.key, c.key)))
                      for c in columns])
        key = storage.new_key("xlsx")
        done = 0
        try:
            for row in db.session.execute(stmt.execution_options(yield_per=CHUNK)):
                sheet.append([_cell_text(sheet, fmt(value))
                              for fmt, value in zip(formatters, row, strict=True)])
                done += 1
                if done % PROGRESS_EVERY == 0:
                    progress(done, total)
            workbook.save(storage.path_of(key))
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
                    "unit_delegation_id", "unit_sub_delegation_id", "submitted_at"],
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


@operation("export_invoices")
def export_invoices(actor: Actor, params: dict, progress: Progress) -> dict:
    return write_export(INVOICES, actor, params, progress)


@operation("export_units")
def export_units(actor: Actor, params: dict, progress: Progress) -> dict:
    return write_export(UNITS, actor, params, progress)


@operation("export_persons")
def export_persons(actor: Actor, params: dict, progress: Progress) -> dict:
    return write_export(PERSONS, actor, params, progress)
