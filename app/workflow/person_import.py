"""Persons from a spreadsheet (issue 16): a unit downloads the template (xlsx, zh or en), fills
one row per person and uploads it (xlsx, xls, or CSV in UTF-8 or GBK). The preview says which
rows add a person, which change a draft of the unit (with the differences), which change
nothing and which are refused (column and reason, the person form's own checks); confirming
applies the good rows in one transaction, set-based and audited, as drafts or submitted
(PERSON_MOVES), and hands back the refused rows as a workbook with the reason in a last column.

Reading: python-calamine for xlsx and xls (the first visible sheet; merged cells give every
cell of the range the top-left value), with an xlsx's formula cells read as their formula's
text from the sheet's XML (never evaluated); csv for CSV (UTF-8 or GBK). Empty rows are
skipped, and a sheet over the size or row limit is refused with the limit."""
from __future__ import annotations

import csv
import hashlib
import html
import io
import re
import unicodedata
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Callable, Iterator
from xml.etree import ElementTree

import rvgsrust_xlsxwriter as xlsx
import sqlalchemy as sa
from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import column_index_from_string
from openpyxl.worksheet.datavalidation import DataValidation
from sqlalchemy.exc import IntegrityError
from werkzeug.datastructures import FileStorage

from app import models as m
from app import storage
from app.clock import now
from app.exports import _cell_text, open_sheet
from app.extensions import db
from app.formatting import fmt_datetime
from app.scoping.actor import READ, Actor
from app.scoping.rules import scoped
from app.search_keys import id_number_key, name_tokens, normalised_id_number, person_keys
from app.tasks import operation, report
from app.validation import normalise_text
from app.workflow import persons
from app.workflow.audit import record_many
from app.workflow.editions import current_edition
from app.workflow.errors import BatchResult, InputRefused, WorkflowError
from app.workflow.persons import FieldRefused, PersonData
from app.workflow.statements import _decode

PS = m.PersonStatus
FILE_FIELD = _l("Spreadsheet of persons")
OPERATION = "import_persons"
EXTENSIONS = (".xlsx", ".xls", ".csv", ".txt")
# The header row is looked for in the first rows (a title may stand above it).
HEADER_SCAN_ROWS = 10
# Rows of nothing but empty cells after which the sheet is taken to have ended (formatted but
# empty rows down to row 1,048,576 would otherwise be read one by one).
EMPTY_RUN_END = 10000
# An xlsx is a zip: what its parts may add up to once unpacked (a 5 MB file of persons
# unpacks to about 40 MB; a zip bomb to gigabytes).
XLSX_UNPACKED_MAX = 200 * 1024 * 1024


@dataclass(frozen=True)
class Column:
    key: str
    label: Any
    # Other headers people write for it (both languages; the labels are matched too).
    aliases: tuple[str, ...] = ()
    required: bool = False


# The person form's fields, in the template's order. No tag: the delegation tags persons.
COLUMNS = (
    Column("name", _l("Name"), ("姓名", "名字", "full name"), True),
    Column("gender", _l("Gender"), ("性别", "sex")),
    Column("id_type", _l("ID document"), ("证件类型", "证件种类", "document type", "id type")),
    Column("id_number", _l("ID number"), ("证件号码", "证件号", "身份证号", "身份证号码",
                                          "document number", "id no"), True),
    Column("nationality", _l("Nationality"), ("国籍", "国家", "country")),
    Column("mobile", _l("Mobile"), ("手机", "手机号", "手机号码", "mobile number", "phone")),
    Column("email", _l("E-mail"), ("邮箱", "电子邮箱", "电子邮件", "email", "e-mail address")),
    Column("job_title", _l("Job title"), ("职务", "职位", "岗位", "position")),
    Column("entry_dates", _l("Entry dates"), ("入场日期", "参观日期", "entry days")),
)
KEYS = tuple(c.key for c in COLUMNS)
BY_KEY = {c.key: c for c in COLUMNS}
# A change the preview lists beside the columns': a photo from the zip.
PHOTO = Column("photo", _l("Photo"))
# What the preview and the refused rows' file say of a row the database refuses.
OTHER_UNIT = _l("a person with this ID document is already registered for this edition by "
                "another unit")
REUSE = _l("this person keeps an earlier badge: change it in the form")
ALL_DAYS = ("all", "全部", "全部日期", "每天", "全天")
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y%m%d", "%Y年%m月%d日")
SHORT_DATE_FORMATS = ("%m-%d", "%m/%d", "%m.%d", "%m月%d日")


def _norm(value: Any) -> str:
    """A header or a choice as compared: NFKC, lower case, no spaces, no "*" marks, nothing in
    brackets ("国籍（两位代码）")."""
    text = unicodedata.normalize("NFKC", str(value or "")).lower()
    text = re.sub(r"\(.*?\)|\*", "", text)
    return re.sub(r"\s+", "", text)


def _text(value: Any) -> str:
    """A cell as text: numbers without a trailing .0, dates as ISO, a formula as its text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, datetime):
        value = value.date() if not (value.hour or value.minute or value.second) else value
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


# ---------------------------------------------------------------------------- reading -------

def _refused(problem: Any) -> InputRefused:
    return InputRefused(_l("Check “%(field)s”: %(problem)s Nothing was imported.",
                           field=FILE_FIELD, problem=problem))


def _xlsx_rows(data: bytes) -> Iterator[list[Any]]:
    """An xlsx: its values as python-calamine reads them (fast, the file's cached values),
    with every formula cell replaced by its formula's text, read from the sheet's XML: a
    formula is shown as the text it is and never evaluated."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if sum(i.file_size for i in archive.infolist()) > XLSX_UNPACKED_MAX:
                raise _refused(_l("the Excel file unpacks to more than %(mb)d MB.",
                                  mb=XLSX_UNPACKED_MAX // 1024 // 1024))
            name, path = _first_visible_sheet(archive)
            xml = archive.read(path)
    except InputRefused:
        raise
    except Exception:  # not a zip, no workbook part, a damaged archive
        raise _refused(_l("the Excel file is damaged or protected and cannot be read.")
                       ) from None
    yield from _calamine_rows(data, name, _formulas(xml))


def _first_visible_sheet(archive: zipfile.ZipFile) -> tuple[str, str]:
    """The name and the part of the workbook's first visible worksheet."""
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
          "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
          "p": "http://schemas.openxmlformats.org/package/2006/relationships"}
    book = ElementTree.fromstring(archive.read("xl/workbook.xml"))
    rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    targets = {rel.get("Id"): rel.get("Target") for rel in rels.findall("p:Relationship", ns)}
    for sheet in book.iterfind("m:sheets/m:sheet", ns):
        if sheet.get("state", "visible") != "visible":
            continue
        target = targets.get(sheet.get(f"{{{ns['r']}}}id"), "")
        if "worksheets/" not in target:
            continue  # a chart sheet holds no cells
        return sheet.get("name"), target.lstrip("/") if target.startswith("/xl/") \
            else f"xl/{target}"
    raise _refused(_l("the workbook has no visible sheet."))


_FORMULA_CELL = re.compile(rb'<c\b([^>]*)>\s*<f\b[^>]*?(?:/>|>(.*?)</f>)', re.S)
_CELL_REF = re.compile(rb'\br="([A-Z]+)(\d+)"')


def _formulas(xml: bytes) -> dict[tuple[int, int], str]:
    """{(row, column): "=formula"} of the sheet's formula cells (0-based); a cell sharing
    another's formula shows "=" alone."""
    if b"<f" not in xml:
        return {}
    found = {}
    for match in _FORMULA_CELL.finditer(xml):
        ref = _CELL_REF.search(match.group(1))
        if ref is None:
            continue
        text = html.unescape((match.group(2) or b"").decode("utf-8", "replace"))
        found[(int(ref.group(2)) - 1, column_index_from_string(ref.group(1).decode()) - 1)] = \
            "=" + text
    return found


def _calamine_rows(data: bytes, sheet_name: str | None,
                   formulas: dict[tuple[int, int], str]) -> Iterator[list[Any]]:
    from python_calamine import CalamineWorkbook, SheetVisibleEnum

    try:
        workbook = CalamineWorkbook.from_filelike(io.BytesIO(data))
        if sheet_name is None:
            sheet_name = next((s.name for s in workbook.sheets_metadata
                               if s.visible == SheetVisibleEnum.Visible), None)
            if sheet_name is None:
                raise _refused(_l("the workbook has no visible sheet."))
        sheet = workbook.get_sheet_by_name(sheet_name)
        rows, merged = sheet.to_python(skip_empty_area=False), sheet.merged_cell_ranges or []
    except InputRefused:
        raise
    except Exception:  # calamine raises its own error types for every damaged workbook
        raise _refused(_l("the Excel file is damaged or protected and cannot be read.")
                       ) from None
    for (row, column), text in formulas.items():
        if row < len(rows):
            cells = rows[row]
            if column >= len(cells):
                cells.extend([""] * (column + 1 - len(cells)))
            cells[column] = text
    yield from _spread(iter(rows), merged)


def _xls_rows(data: bytes) -> Iterator[list[Any]]:
    """An xls (BIFF): python-calamine reads it, formulas as the values Excel saved."""
    return _calamine_rows(data, None, {})


def _spread(rows: Iterator[Any], merged: list) -> Iterator[list[Any]]:
    """The rows with each merged range's top-left value in every cell of the range."""
    spans: dict[int, list[tuple[int, int, int]]] = {}
    for (top, left), (bottom, right) in merged:
        if bottom > top or right > left:
            for r in range(top, min(bottom, top + 100000) + 1):
                spans.setdefault(r, []).append((top, left, right))
    values: dict[tuple[int, int], Any] = {}
    for index, row in enumerate(rows):
        row = list(row)
        for top, left, right in spans.get(index, ()):
            if index == top:
                values[(top, left)] = row[left] if left < len(row) else None
            if right >= len(row):
                row.extend([None] * (right + 1 - len(row)))
            for column in range(left, right + 1):
                row[column] = values.get((top, left))
        yield row


def _csv_rows(data: bytes) -> Iterator[list[Any]]:
    try:
        text = _decode(data)
    except WorkflowError:
        raise _refused(_l("its characters cannot be read: save it as CSV in UTF-8 or GBK."))\
            from None
    if "\x00" in text:
        raise _refused(_l("this is not a spreadsheet: choose an Excel (.xlsx, .xls) or CSV "
                          "file."))
    sample = "\n".join(text.splitlines()[:20])
    counts = {d: sample.count(d) for d in (",", "\t", ";")}
    delimiter = max(counts, key=counts.get) if any(counts.values()) else ","
    yield from csv.reader(io.StringIO(text), delimiter=delimiter)


def sheet_rows(data: bytes, file_name: str) -> Iterator[list[Any]]:
    """The first visible sheet's cells, row by row (row 1 first), whatever the format."""
    if not (file_name or "").lower().endswith(EXTENSIONS):
        raise _refused(_l("this type of file is not accepted: choose an Excel (.xlsx, .xls) "
                          "or CSV file."))
    if not data:
        raise _refused(_l("the file is empty."))
    if data.startswith(b"PK\x03\x04"):
        return _xlsx_rows(data)
    if data.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return _xls_rows(data)
    head = data[:2048]
    if (b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff"))) or \
            head.lstrip().lower().startswith((b"%pdf", b"\x89png", b"\xff\xd8")):
        raise _refused(_l("this is not a spreadsheet: choose an Excel (.xlsx, .xls) or CSV "
                          "file."))
    return _csv_rows(data)


def _header_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for column in COLUMNS:
        for language in ("zh", "en"):
            with force_locale(language):
                names[_norm(str(column.label))] = column.key
        names[_norm(column.key)] = column.key
        names.update({_norm(alias): column.key for alias in column.aliases})
    return names


@dataclass
class SheetRow:
    row: int                 # the row's number in the sheet (1 = first)
    cells: dict[str, Any]    # the cell under each known column, as read


def read_sheet(data: bytes, file_name: str, max_rows: int) -> list[SheetRow]:
    """The data rows under the header row (the first naming the name and ID number columns),
    empty rows left out; more than `max_rows` rows is a refusal naming the limit."""
    names = _header_names()
    rows = sheet_rows(data, file_name)
    columns: dict[str, int] = {}
    for index, raw in enumerate(rows):
        if index >= HEADER_SCAN_ROWS:
            break
        found: dict[str, int] = {}
        for position, cell in enumerate(raw):
            key = names.get(_norm(_text(cell)))
            if key and key not in found:
                found[key] = position
        if all(c.key in found for c in COLUMNS if c.required):
            columns = found
            break
    if not columns:
        raise _refused(_l("no header row naming the columns %(columns)s was found in its "
                          "first %(rows)d rows: use the template.",
                          columns=", ".join(f"“{c.label}”" for c in COLUMNS if c.required),
                          rows=HEADER_SCAN_ROWS))
    found_rows: list[SheetRow] = []
    empty_run = 0
    for number, raw in enumerate(rows, start=index + 2):
        cells = {key: raw[i] if i < len(raw) else None for key, i in columns.items()}
        if not any(_text(v) for v in cells.values()):
            empty_run += 1
            if empty_run >= EMPTY_RUN_END:
                break
            continue
        empty_run = 0
        if len(found_rows) >= max_rows:
            raise _refused(_l("it has more than %(max)d rows of persons; split it into "
                              "files of at most %(max)d rows.", max=max_rows))
        found_rows.append(SheetRow(number, cells))
    return found_rows


# --------------------------------------------------------------------------- checking -------

def _choices(enum_cls: type, extra: dict[str, Any]) -> dict[str, Any]:
    """An enum's members by their labels in both languages, their codes and `extra`."""
    found = {_norm(k): v for k, v in extra.items()}
    for member in enum_cls:
        found[_norm(member.value)] = member
        for language in ("zh", "en"):
            with force_locale(language):
                found[_norm(str(member.label))] = member
    return found


def _from_id_labels() -> list[str]:
    labels = []
    for language in ("zh", "en"):
        with force_locale(language):
            labels.append(_norm(_("As in the ID number")))
    return labels


def _choice(value: Any, choices: dict[str, Any], key: str, empty: Any) -> Any:
    text = _norm(_text(value))
    if not text:
        return empty
    if text in choices:
        return choices[text]
    raise FieldRefused(key, _l("%(column)s: “%(value)s” is not one of the values allowed "
                               "(see the sheet “%(sheet)s” of the template).",
                               column=BY_KEY[key].label, value=_text(value)[:40],
                               sheet=_l("Allowed values")))


def read_entry_dates(value: Any, edition: m.Edition) -> list[date]:
    """Entry dates as a cell holds them: an Excel date, or days written 2022-11-05 (also
    2022/11/05, 11-05, 11月5日…) separated by commas, semicolons, 、 or spaces; "all" (全部)
    for every exhibition day. The days are checked by the person form's rule afterwards."""
    if isinstance(value, datetime):
        return [value.date()]
    if isinstance(value, date):
        return [value]
    text = normalise_text(_text(value)).strip()
    if not text:
        return []
    if _norm(text) in ALL_DAYS:
        return edition.days
    days = []
    for token in re.split(r"[,，;；、\s]+", text):
        if not token:
            continue
        day = _one_date(token, edition)
        if day is None:
            raise FieldRefused("entry_dates", _l(
                "Entry dates: “%(text)s” is not a date; write the days as %(example)s, "
                "separated by commas.", text=token[:40],
                example=edition.start_date.isoformat()))
        days.append(day)
    return days


def _one_date(token: str, edition: m.Edition) -> date | None:
    try:
        return date.fromisoformat(token)
    except ValueError:
        pass
    for pattern in DATE_FORMATS:
        try:
            return datetime.strptime(token, pattern).date()
        except ValueError:
            continue
    for pattern in SHORT_DATE_FORMATS:
        try:
            day = datetime.strptime(f"{edition.start_date.year}-{token}", f"%Y-{pattern}")
            return day.date()
        except ValueError:
            continue
    return None


@dataclass(eq=False)
class ImportRow:
    """One row of the file as the preview shows it and the import applies it."""

    row: int
    cells: list[str]                      # the texts under each column of COLUMNS
    data: PersonData | None = None
    refusals: list[tuple[str, Any]] = field(default_factory=list)   # (column key, reason)
    action: str = ""                      # add | update | unchanged | refused
    person_id: int | None = None          # the unit's person it is (added: an earlier one)
    registration_id: int | None = None
    changes: list[tuple[str, str, str]] = field(default_factory=list)  # (key, before, after)
    photo: str | None = None              # its photo's name in the uploaded zip
    editable: bool = False                # a new person, or a draft the file may change

    @property
    def name(self) -> str:
        return self.cells[0]

    @property
    def id_key(self) -> str | None:
        return persons.id_key(self.data.id_type, self.data.id_number) if self.data else None

    @property
    def entry_text(self) -> str:
        return _days_text(self.data.entry_dates) if self.data else ""

    def refuse(self, key: str, reason: Any) -> None:
        self.refusals.append((key, reason))
        self.action = "refused"

    def reason(self) -> "RowReason":
        return RowReason(self.refusals)


class RowReason:
    """A row's refusals, each after its column's label unless its message already starts
    with it ("Gender: …"), rendered in the language of whoever reads it (the task report
    keeps both)."""

    def __init__(self, refusals: list[tuple[str, Any]]) -> None:
        self.refusals = refusals

    def __str__(self) -> str:
        parts = []
        for key, reason in self.refusals:
            label, text = str(BY_KEY[key].label), str(reason)
            parts.append(text if text.startswith(label) else
                         _("%(column)s: %(reason)s", column=label, reason=text))
        return "; ".join(parts)


def _check_row(sheet_row: SheetRow, edition: m.Edition, genders: dict, id_types: dict
               ) -> ImportRow:
    cells = sheet_row.cells
    row = ImportRow(sheet_row.row, [_text(cells.get(k)) for k in KEYS])
    parsed: dict[str, Any] = {}
    for key, read in (("gender", lambda v: _choice(v, genders, "gender", None)),
                      ("id_type", lambda v: _choice(v, id_types, "id_type",
                                                    m.IdType.mainland_id)),
                      ("entry_dates", lambda v: read_entry_dates(v, edition))):
        try:
            parsed[key] = read(cells.get(key))
        except FieldRefused as exc:
            row.refuse(key, exc.message)
    if row.refusals and "id_type" not in parsed:
        return row
    data = PersonData(name=_text(cells.get("name")), gender=parsed.get("gender"),
                      id_type=parsed["id_type"], id_number=_text(cells.get("id_number")),
                      nationality=_text(cells.get("nationality")),
                      mobile=_text(cells.get("mobile")) or None,
                      email=_text(cells.get("email")) or None,
                      job_title=_text(cells.get("job_title")) or None,
                      entry_dates=parsed.get("entry_dates") or [])
    cleaned, refusals = persons.person_refusals(data, edition)
    for exc in refusals:
        if not any(k == exc.field for k, _r in row.refusals):
            row.refuse(exc.field, exc.message)
    if not row.refusals:
        row.data = cleaned
    return row


def _compare(row: ImportRow, before: Any, edition: m.Edition) -> list[tuple[str, str, str]]:
    """What the row changes on the unit's person (before is a row of person columns)."""
    data = row.data
    pairs = [("name", before.name, data.name),
             ("gender", before.gender.label, data.gender.label),
             ("nationality", before.nationality, data.nationality),
             ("mobile", before.mobile or "", data.mobile or ""),
             ("email", before.email or "", data.email or ""),
             ("job_title", before.job_title or "", data.job_title or ""),
             ("entry_dates", _days_text(edition.mask_to_days(before.entry_days)),
              _days_text(data.entry_dates))]
    return [(k, str(a), str(b)) for k, a, b in pairs if str(a) != str(b)]


def _days_text(days: list[date]) -> str:
    return ", ".join(d.isoformat() for d in days)


@dataclass
class ImportPlan:
    file_name: str
    file_hash: str
    rows: list[ImportRow]
    # An earlier import of the same file by this unit, if any.
    earlier: m.PersonImport | None = None
    # Photos of the zip that name no row's ID number, and those not taken (too large, …).
    unmatched_photos: list[str] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for r in self.rows if r.action == action)

    def of(self, action: str) -> list[ImportRow]:
        return [r for r in self.rows if r.action == action]


def _classify(rows: list[ImportRow], edition: m.Edition, unit_registration: m.UnitRegistration,
              lock: bool) -> None:
    """Add, update, unchanged or refused, for every checked row, in two queries: the edition's
    registrations of the rows' ID documents, and the unit's persons of earlier editions."""
    keys = Counter(r.id_key for r in rows if r.data)
    lines: dict[str, list[int]] = {}
    for r in rows:
        if r.data:
            lines.setdefault(r.id_key, []).append(r.row)
    for r in rows:
        if r.data and keys[r.id_key] > 1:
            r.refuse("id_number", _l("the file gives this ID number in more than one row "
                                     "(rows %(rows)s)",
                                     rows=", ".join(map(str, lines[r.id_key]))))
    wanted = [r for r in rows if r.data and r.action != "refused"]
    if not wanted:
        return
    PR, P = m.PersonRegistration, m.Person
    query = (sa.select(PR.id, PR.id_key, PR.status, PR.is_reuse, PR.entry_days,
                       PR.unit_registration_id, PR.person_id, P.name, P.gender, P.nationality,
                       P.mobile, P.email, P.job_title)
             .join(P, P.id == PR.person_id)
             .where(PR.edition_id == edition.id, PR.id_key.in_({r.id_key for r in wanted})))
    if lock:
        query = query.with_for_update(of=PR)
    registered = {row.id_key: row for row in db.session.execute(query)}
    # The numbers are sealed (app.pii): the unit's earlier persons are found by search key.
    earlier = {(row.id_type, row.id_search_key): row.id for row in db.session.execute(
        sa.select(P.id, P.id_type, P.id_search_key).where(
            P.unit_id == unit_registration.unit_id,
            P.id_search_key.in_({id_number_key(r.data.id_number) for r in wanted
                                 if r.id_key not in registered})))}
    for r in wanted:
        found = registered.get(r.id_key)
        if found is None:
            r.action, r.editable = "add", True
            r.person_id = earlier.get((r.data.id_type, id_number_key(r.data.id_number)))
            continue
        if found.unit_registration_id != unit_registration.id:
            r.refuse("id_number", OTHER_UNIT)
            continue
        r.person_id, r.registration_id = found.person_id, found.id
        r.editable = found.status is PS.draft and not found.is_reuse
        r.changes = _compare(r, found, edition)
        if not r.changes:
            r.action = "unchanged"
        elif found.is_reuse:
            r.refuse("id_number", REUSE)
        elif found.status is not PS.draft:
            r.refuse("id_number", _l("this person is already submitted (status “%(status)s”): "
                                     "the file cannot change it", status=found.status.label))
        else:
            r.action = "update"


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _open_registration(actor: Actor, edition: m.Edition, lock: bool) -> m.UnitRegistration:
    """The unit's registration, open for persons like the form (state, deadline)."""
    unit_registration = persons.unit_registration_for(actor, edition)
    if lock:
        db.session.execute(sa.select(m.UnitRegistration.id).where(
            m.UnitRegistration.id == unit_registration.id).with_for_update())
    persons.require_persons_open(edition, unit_registration)
    return unit_registration


def import_refusal(actor: Actor) -> Any | None:
    """Why the unit cannot import persons now (its state, the deadline), or None."""
    try:
        _open_registration(actor, current_edition(), lock=False)
    except WorkflowError as exc:
        return exc.message
    return None


def plan_import(actor: Actor, data: bytes, file_name: str, lock: bool = False,
                photos: bytes | None = None) -> ImportPlan:
    """Read and check every row of the file (and the names of the photos' zip), and say what
    each would do; changes nothing."""
    edition = current_edition()
    unit_registration = _open_registration(actor, edition, lock)
    most = current_app.config["PERSON_IMPORT_MAX_BYTES"]
    if len(data) > most:
        raise _refused(_l("the file is larger than %(mb)s MB.", mb=_mb(most)))
    sheet = read_sheet(data, file_name, current_app.config["PERSON_IMPORT_MAX_ROWS"])
    genders = _choices(m.Gender, {"男": m.Gender.male, "女": m.Gender.female,
                                  "m": m.Gender.male, "f": m.Gender.female,
                                  **{label: None for label in _from_id_labels()}})
    id_types = _choices(m.IdType, {"身份证": m.IdType.mainland_id,
                                   "居民身份证": m.IdType.mainland_id,
                                   "护照": m.IdType.passport})
    rows = [_check_row(r, edition, genders, id_types) for r in sheet]
    _classify(rows, edition, unit_registration, lock)
    digest = file_hash(data)
    earlier = db.session.scalars(scoped(
        sa.select(m.PersonImport).where(m.PersonImport.file_hash == digest,
                                        m.PersonImport.edition_id == edition.id)
        .order_by(m.PersonImport.id.desc()).limit(1), m.PersonImport, actor, READ)).first()
    plan = ImportPlan((file_name or "")[:200], digest, rows, earlier)
    if photos:
        _match_photos(plan, photos)
    return plan


PHOTOS_FIELD = _l("Photos (zip)")
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png")


def photo_names(photos: bytes) -> dict[str, str]:
    """The zip's images by the ID number their file name gives ("44011320141005001X.jpg",
    in any folder; spaces, case and full-width forms as the number search reads them)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(photos))
        entries = archive.infolist()
    except Exception:  # not a zip, or a damaged one
        raise InputRefused(_l("Check “%(field)s”: this is not a zip file of photos. Nothing "
                              "was imported.", field=PHOTOS_FIELD)) from None
    if len(entries) > current_app.config["PERSON_IMPORT_MAX_ROWS"]:
        raise InputRefused(_l("Check “%(field)s”: it holds more than %(max)d files. Nothing "
                              "was imported.", field=PHOTOS_FIELD,
                              max=current_app.config["PERSON_IMPORT_MAX_ROWS"]))
    found = {}
    for entry in entries:
        name = entry.filename.rsplit("/", 1)[-1]
        if entry.is_dir() or name.startswith(".") or "." not in name:
            continue
        stem, ext = name.rsplit(".", 1)
        found[normalised_id_number(stem) + "." + ext.lower()] = entry.filename
    return found


def _match_photos(plan: ImportPlan, photos: bytes) -> None:
    names = photo_names(photos)
    by_number = {key.rsplit(".", 1)[0]: member for key, member in names.items()
                 if key.endswith(PHOTO_EXTENSIONS)}
    used = set()
    for row in plan.rows:
        if row.data and row.editable and row.action in ("add", "update", "unchanged"):
            member = by_number.get(row.data.id_number)
            if member:
                row.photo = member
                used.add(member)
                if row.action == "unchanged":
                    row.action = "update"
                    row.changes.append(("photo", "", member))
    plan.unmatched_photos = sorted(set(names.values()) - used)


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:g}"


# --------------------------------------------------------------------------- applying -------

def apply_import(actor: Actor, data: bytes, file_name: str, submit: bool,
                 progress: Callable[[int, int], None], task_id: int | None = None,
                 photos: bytes | None = None
                 ) -> tuple[m.PersonImport, ImportPlan, BatchResult | None, list[str]]:
    """Apply the file: the rows checked again under a lock of the unit's registration (two
    imports of one unit follow each other), new persons and their draft registrations in one
    INSERT each, changed drafts in one UPDATE each, one audit row per person in one INSERT,
    then (ticked) submitted through PERSON_MOVES; all in one transaction. The same file again
    finds every row unchanged and creates nothing."""
    plan = plan_import(actor, data, file_name, lock=True, photos=photos)
    total = len(plan.rows)
    progress(total // 3, total)
    edition = current_edition()
    unit_registration = persons.unit_registration_for(actor, edition)
    record = m.PersonImport(unit_id=actor.unit_id, edition_id=edition.id,
                            file_name=plan.file_name, file_hash=plan.file_hash, task_id=task_id,
                            rows_read=total, added=plan.count("add"),
                            updated=plan.count("update"), unchanged=plan.count("unchanged"),
                            refused=plan.count("refused"), submit=submit,
                            imported_by_id=actor.user_id, imported_at=now())
    db.session.add(record)
    db.session.flush()
    try:
        new_ids, changed_ids = _write(actor, plan, edition, unit_registration, record.id)
    except IntegrityError:
        db.session.rollback()
        raise WorkflowError(_l("A person of the file was registered meanwhile by another "
                               "request; nothing was imported. Upload the file again."),
                            409) from None
    progress(total // 2, total)
    photo_notes, old_files = _store_photos(plan, photos) if photos else ([], [])
    progress(total * 2 // 3, total)
    submitted = None
    if submit and (new_ids or changed_ids):
        submitted = persons.submit_persons(actor, new_ids + changed_ids, commit=False)
        record.submitted = submitted.done_count
    if plan.count("refused"):
        record.refused_file_key = _refused_workbook(plan)
    db.session.commit()
    for key in old_files:
        storage.remove(key)
    progress(total, total)
    return record, plan, submitted, photo_notes


def _store_photos(plan: ImportPlan, photos: bytes) -> tuple[list[str], list[str]]:
    """Each matched photo checked and stored by the person form's own function (one read of
    the persons); a refused photo leaves its person without one, and the report says why.
    Returns the report's notes and the files the new photos replace."""
    rows = [r for r in plan.rows if r.photo and r.action in ("add", "update")]
    if not rows:
        return [], []
    people = {p.id: p for p in db.session.scalars(
        sa.select(m.Person).where(m.Person.id.in_([r.person_id for r in rows])))}
    notes, old_files = [], []
    with zipfile.ZipFile(io.BytesIO(photos)) as archive:
        for row in rows:
            person = people[row.person_id]
            before = [person.photo_key, person.thumb_key]
            upload = FileStorage(io.BytesIO(archive.read(row.photo)), filename=row.photo)
            try:
                persons.store_photo(person, upload)
            except WorkflowError as exc:
                notes.append(_("%(row)s: the photo %(file)s was not taken: %(reason)s",
                               row=row_label(row), file=row.photo, reason=str(exc.message)))
                continue
            old_files.extend(k for k in before if k)
    db.session.flush()
    return notes, old_files


def _write(actor: Actor, plan: ImportPlan, edition: m.Edition,
           unit_registration: m.UnitRegistration, import_id: int) -> tuple[list[int], list[int]]:
    P, PR = m.Person, m.PersonRegistration
    stamp = now()

    def person_values(row: ImportRow) -> dict[str, Any]:
        d = row.data
        return {"name": d.name, "name_search": name_tokens(d.name), "gender": d.gender,
                "nationality": d.nationality, "mobile": d.mobile, "email": d.email,
                "job_title": d.job_title, **person_keys(d.id_number, d.mobile),
                "updated_at": stamp}

    adds = plan.of("add")
    fresh = [r for r in adds if r.person_id is None]
    # An earlier edition's person of the unit, or a draft of this one, takes the file's data.
    rewritten = [r for r in adds if r.person_id is not None] + plan.of("update")
    if fresh:
        # Core INSERTs (the table, not the class): no ORM bookkeeping per row.
        people = P.__table__
        ids = db.session.execute(
            people.insert().returning(people.c.id, sort_by_parameter_order=True),
            [{"unit_id": actor.unit_id, "id_type": r.data.id_type,
              "id_number": r.data.id_number, "created_at": stamp, **person_values(r)}
             for r in fresh]).scalars().all()
        for row, person_id in zip(fresh, ids, strict=True):
            row.person_id = person_id
    if rewritten:
        db.session.execute(sa.update(P), [{"id": r.person_id, **person_values(r)}
                                          for r in rewritten])
    new_ids: list[int] = []
    if adds:
        table = PR.__table__
        new_ids = db.session.execute(
            table.insert().returning(table.c.id, sort_by_parameter_order=True),
            [{"edition_id": edition.id, "person_id": r.person_id,
              "unit_registration_id": unit_registration.id,
              "delegation_id": unit_registration.delegation_id,
              "sub_delegation_id": unit_registration.sub_delegation_id,
              "id_key": r.id_key, "entry_days": edition.days_to_mask(r.data.entry_dates),
              "created_at": stamp, "updated_at": stamp} for r in adds]).scalars().all()
        for row, registration_id in zip(adds, new_ids, strict=True):
            row.registration_id = registration_id
        record_many(actor, "person_registration", [(i, None) for i in new_ids], "create",
                    to_state=PS.draft, detail={"import": import_id})
    updates = plan.of("update")
    if updates:
        db.session.execute(sa.update(PR), [
            {"id": r.registration_id, "entry_days": edition.days_to_mask(r.data.entry_dates),
             "updated_at": stamp} for r in updates])
        record_many(actor, "person_registration", [(r.registration_id, None) for r in updates],
                    "update", detail={"import": import_id})
    db.session.flush()
    return new_ids, [r.registration_id for r in updates]


def _refused_workbook(plan: ImportPlan) -> str:
    """The refused rows, as read, under the template's headers, with the reason last: to fix
    and upload again (the reason column is not read back)."""
    workbook = xlsx.Workbook()
    headers = [str(c.label) for c in COLUMNS] + [_("Reason refused")]
    sheet = open_sheet(workbook, _("Refused rows"), headers, [16, 8, 18, 22, 8, 16, 24, 16, 24,
                                                              60])
    rows = [[_cell_text(text) for text in r.cells] + [_cell_text(str(r.reason()))]
            for r in plan.of("refused")]
    sheet.write_rows(1, 0, rows)
    return storage.store(workbook.save_to_buffer(), "xlsx")


def row_label(row: ImportRow) -> str:
    return _("row %(row)d, %(name)s", row=row.row, name=row.name or "-")


@operation(OPERATION)
def import_persons(actor: Actor, params: dict, progress: Callable[[int, int], None]) -> dict:
    """The task that applies an uploaded file (inline for a small one): its report counts
    the rows, lists each refused one with its reason and offers the refused rows' workbook."""
    with force_locale(params.get("language") or "zh"):
        try:
            with open(storage.path_of(params["key"]), "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            raise WorkflowError(_l("This file is no longer waiting; upload it again."),
                                409) from None
        photos = None
        if params.get("photos"):
            with open(storage.path_of(params["photos"]), "rb") as fh:
                photos = fh.read()
        record, plan, submitted, photo_notes = apply_import(
            actor, data, params["file"], bool(params.get("submit")), progress,
            params.get("task_id"), photos)
        result = BatchResult()
        result.done = [r.registration_id for r in plan.rows if r.action in ("add", "update")]
        for row in plan.of("refused"):
            result.refuse(row.row, row_label(row), row.reason())
        outcome = report(result)
        notes = [_("%(file)s: %(added)d added, %(updated)d updated, %(unchanged)d unchanged, "
                   "%(refused)d refused.", file=plan.file_name, added=record.added,
                   updated=record.updated, unchanged=record.unchanged,
                   refused=record.refused)]
        notes.extend(photo_notes)
        if submitted is not None:
            notes.append(_("%(count)d submitted.", count=submitted.done_count))
            for group in _grouped(submitted):
                notes.append(group)
        if record.refused_file_key:
            notes.append(_("The refused rows are in the file below, with the reason in the "
                           "last column: correct them and upload that file again."))
            outcome.update(file_key=record.refused_file_key,
                           filename=_("refused-rows-%(id)d.xlsx", id=record.id))
        outcome["notes"] = notes
        outcome["import_id"] = record.id
    storage.remove(params["key"])
    storage.remove(params.get("photos"))
    return outcome


def _grouped(result: BatchResult) -> list[str]:
    reasons = Counter(str(r.reason) for r in result.refused)
    return [_("%(count)d not submitted (kept as drafts): %(reason)s", count=n, reason=reason)
            for reason, n in reasons.most_common()]


def start_import(actor: Actor, key: str, file_name: str, submit: bool, rows: int,
                 language: str, back: str, photos: str | None = None) -> m.BackgroundTask:
    """The task of a confirmed file: in a worker when it has more rows than a batch runs
    inline (and Redis is there), else now, in this request; either way its page follows."""
    from app.extensions import queue
    from app.tasks import enqueue_task, run_task

    task = m.BackgroundTask(operation=OPERATION, user_id=actor.user_id, total=max(rows, 1),
                            processed=0, params={"key": key, "file": file_name,
                                                 "photos": photos, "submit": submit,
                                                 "language": language, "back": back})
    db.session.add(task)
    db.session.flush()
    task.params = {**task.params, "task_id": task.id}
    db.session.commit()
    if rows > current_app.config["BATCH_INLINE_MAX"] and not queue.inline:
        enqueue_task(task.id)
    else:
        run_task(task.id)
    return task


def recent_imports(actor: Actor, limit: int = 10) -> list[m.PersonImport]:
    edition = current_edition()
    return list(db.session.scalars(scoped(
        sa.select(m.PersonImport).where(m.PersonImport.edition_id == edition.id)
        .order_by(m.PersonImport.id.desc()).limit(limit), m.PersonImport, actor, READ)))


def describe_earlier(record: m.PersonImport) -> str:
    return _("This file was already imported on %(when)s: %(added)d added, %(updated)d "
             "updated. Importing it again changes only what differs.",
             when=fmt_datetime(record.imported_at), added=record.added,
             updated=record.updated)


# --------------------------------------------------------------------------- template -------

def template_workbook(edition: m.Edition) -> bytes:
    """The template in the current language: the persons sheet (headers, text format for the
    numbers, drop-down lists for gender and ID document) and a second sheet with what each
    column takes, the allowed values and an example row."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = _("Persons")
    allowed = workbook.create_sheet(_("Allowed values"))
    bold = Font(bold=True)
    widths = [16, 14, 22, 24, 10, 18, 26, 18, 28]
    for index, (column, width) in enumerate(zip(COLUMNS, widths, strict=True), start=1):
        cell = sheet.cell(row=1, column=index, value=str(column.label) + (
            " *" if column.required else ""))
        cell.font = bold
        letter = cell.column_letter
        sheet.column_dimensions[letter].width = width
        if column.key in ("id_number", "mobile", "entry_dates", "nationality"):
            # Text, so that Excel keeps an 18-digit ID number and leading zeros as typed.
            sheet.column_dimensions[letter].number_format = "@"
    sheet.freeze_panes = "A2"
    last = current_app.config["PERSON_IMPORT_MAX_ROWS"] + 1
    genders = [_("As in the ID number")] + [str(g.label) for g in m.Gender]
    id_types = [str(t.label) for t in m.IdType]
    # The lists' values on the second sheet (an inline list cannot hold a comma).
    for col, (title, values) in ((7, (_("Gender"), genders)), (8, (_("ID document"),
                                                                     id_types))):
        allowed.cell(row=1, column=col, value=title).font = bold
        for i, value in enumerate(values, start=2):
            allowed.cell(row=i, column=col, value=value)
    quoted = "'" + allowed.title.replace("'", "''") + "'"
    for key, ref in (("gender", f"{quoted}!$G$2:$G${len(genders) + 1}"),
                     ("id_type", f"{quoted}!$H$2:$H${len(id_types) + 1}")):
        letter = sheet.cell(row=1, column=KEYS.index(key) + 1).column_letter
        validation = DataValidation(type="list", formula1=ref, allow_blank=True,
                                    showErrorMessage=True, error=_("Choose a value of the list."),
                                    errorTitle=str(BY_KEY[key].label))
        validation.add(f"{letter}2:{letter}{last}")
        sheet.add_data_validation(validation)
    nationality = sheet.cell(row=1, column=KEYS.index("nationality") + 1).column_letter
    two_letters = DataValidation(type="textLength", operator="equal", formula1="2",
                                 allow_blank=True, showErrorMessage=True,
                                 error=_("The 2-letter country code, e.g. CN, HK, US."))
    two_letters.add(f"{nationality}2:{nationality}{last}")
    sheet.add_data_validation(two_letters)
    days = sheet.cell(row=1, column=KEYS.index("entry_dates") + 1).column_letter
    prompt = DataValidation(type=None, allow_blank=True, showInputMessage=True,
                            promptTitle=str(BY_KEY["entry_dates"].label)[:32],
                            prompt=_entry_help(edition)[:255])
    prompt.add(f"{days}2:{days}{last}")
    sheet.add_data_validation(prompt)

    headers = [_("Column"), _("Required"), _("What to enter"), _("Example")]
    for col, text in enumerate(headers, start=1):
        allowed.cell(row=1, column=col, value=text).font = bold
    example = _example(edition)
    for i, column in enumerate(COLUMNS, start=2):
        allowed.cell(row=i, column=1, value=str(column.label))
        allowed.cell(row=i, column=2, value=_("Yes") if column.required else _("No"))
        allowed.cell(row=i, column=3, value=_help(column.key, edition))
        allowed.cell(row=i, column=4, value=example[column.key])
    start = len(COLUMNS) + 4
    allowed.cell(row=start, column=1, value=_("Example row")).font = bold
    for col, column in enumerate(COLUMNS, start=1):
        allowed.cell(row=start + 1, column=col, value=str(column.label)).font = bold
        allowed.cell(row=start + 2, column=col, value=example[column.key])
    for letter, width in zip("ABCDEFGH", (18, 10, 60, 26, 22, 18, 24, 40), strict=True):
        allowed.column_dimensions[letter].width = width
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _entry_help(edition: m.Edition) -> str:
    return _("Exhibition days %(first)s to %(last)s, separated by commas, e.g. %(example)s; "
             "“%(all)s” for every day.", first=edition.start_date.isoformat(),
             last=edition.end_date.isoformat(), all=_("all"),
             example=_days_text(edition.days[:2]))


def _help(key: str, edition: m.Edition) -> str:
    texts = {
        "name": _("The name as on the ID document (at most 100 characters)."),
        "gender": _("Choose from the list; “%(from_id)s” reads it from a mainland ID card or "
                    "residence permit number.", from_id=_("As in the ID number")),
        "id_type": _("Choose from the list; empty means %(default)s.",
                     default=m.IdType.mainland_id.label),
        "id_number": _("The document's number; a mainland ID card's check digit is "
                       "checked. One row per ID number."),
        "nationality": _("The 2-letter country code (ISO 3166-1), e.g. CN, HK, US; empty "
                         "means CN."),
        "mobile": _("A mainland mobile number, or another with its country code (+44 …)."),
        "email": _("Optional."),
        "job_title": _("Optional (at most 100 characters)."),
        "entry_dates": _entry_help(edition),
    }
    return texts[key]


def _example(edition: m.Edition) -> dict[str, str]:
    # The ID number is python-stdnum's published test number (tests/data/ids-SOURCES.md).
    return {"name": _("Zhang San"), "gender": _("As in the ID number"),
            "id_type": str(m.IdType.mainland_id.label), "id_number": "360426199101010071",
            "nationality": "CN", "mobile": "13800138000", "email": "zhangsan@example.com",
            "job_title": _("Purchasing manager"), "entry_dates": _days_text(edition.days[:2])}
