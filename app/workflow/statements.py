"""Bank statements: finance imports the bank's export as it comes (CSV in GBK or UTF-8, with or
without BOM; Excel .xlsx or .xls), with the bank's Chinese headers and its summary rows above
and below the table. The header row is found by the bank's profile (BankStatementProfile,
admin-editable); credit lines are imported once whatever file brings them again (keyed by the
bank's serial number, else by date, amount, payer account and memo); every other row is listed
with its row number and why it was skipped. Each new line is matched: by the order number in its
memo, else by payer and amount against a declared transfer; the rest finance matches by hand.
Money for an order already paid is recorded as an overpayment for finance to refund. Every
import keeps its report (BankStatementImport)."""
from __future__ import annotations

import csv
import hashlib
import io
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from html.parser import HTMLParser
from typing import Any

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.dialects import postgresql, sqlite

from app import models as m
from app.extensions import db
from app.formatting import fmt_money, yuan_to_fen
from app.scoping.actor import READ, SYSTEM, WRITE, Actor
from app.scoping.rules import get_scoped, scoped
from app.workflow import payments as payment_flow
from app.workflow.audit import record
from app.workflow.errors import InputRefused, WorkflowError
from app.workflow.notices import create_notices, enqueue_sends, send_noted
from app.workflow.numbers import reserve
from app.workflow.payments import PAYMENT_MOVES, confirm_payments, receipt_notices
from app.workflow.transitions import Move, move, table

LS = m.StatementLineStatus
MM = m.StatementMatchMethod
# A statement line's moves: matched to the payment it confirms, or money for an order already
# paid (recorded as an overpayment to refund).
LINE_MOVES = table({
    "match": Move(from_={LS.unmatched}, to=LS.matched),
    "overpaid": Move(from_={LS.unmatched}, to=LS.overpaid),
})

FILE_FIELD = _l("Bank statement file")
# Money for an order that no longer waits (paid, or cancelled) is an overpayment to refund.
CLOSED_ORDERS = (m.OrderStatus.paid, m.OrderStatus.cancelled)
EXTENSIONS = (".csv", ".txt", ".xlsx", ".xls")
# The header row is looked for in the first rows (banks print an account summary above it).
HEADER_SCAN_ROWS = 40
GENERIC_DATES = "%Y-%m-%d|%Y%m%d|%Y/%m/%d|%Y-%m-%d %H:%M:%S|%Y%m%d %H:%M:%S|%Y/%m/%d %H:%M:%S"

# The major banks' enterprise internet-banking exports, as far as their layouts could be
# established (tests/data/statements-SOURCES.md); admins adjust them under Administration.
DEFAULT_PROFILES: list[dict[str, str]] = [
    dict(code="ICBC", name_zh="中国工商银行",
         name_en="ICBC (Industrial and Commercial Bank of China)",
         date_headers="交易时间|交易日期|入账日期", credit_headers="贷方发生额|贷方金额",
         debit_headers="借方发生额|借方金额", payer_name_headers="对方单位名称|对方户名|对方单位",
         payer_account_headers="对方账号", memo_headers="摘要|用途|附言|个性化信息",
         serial_headers="凭证号|交易流水号|流水号", balance_headers="余额|账户余额"),
    dict(code="CCB", name_zh="中国建设银行", name_en="CCB (China Construction Bank)",
         date_headers="交易时间|记账日期|交易日期",
         credit_headers="贷方发生额（收入）|贷方发生额|贷方金额",
         debit_headers="借方发生额（支取）|借方发生额|借方金额", payer_name_headers="对方户名",
         payer_account_headers="对方账号", memo_headers="摘要|备注|附言",
         serial_headers="账户明细编号-交易流水号|交易流水号|流水号",
         balance_headers="余额|账户余额"),
    dict(code="BOC", name_zh="中国银行", name_en="Bank of China",
         date_headers="交易日期|记账日期", amount_headers="交易金额",
         payer_name_headers="付款人名称|对方户名", payer_account_headers="付款人账号|对方账号",
         memo_headers="摘要|用途|交易附言|附言|备注", serial_headers="交易流水号|流水号",
         balance_headers="交易后余额|余额"),
    dict(code="ABC", name_zh="中国农业银行", name_en="ABC (Agricultural Bank of China)",
         date_headers="交易日期|交易时间|入账日期", credit_headers="收入金额|贷方发生额|贷方金额",
         debit_headers="支出金额|借方发生额|借方金额",
         payer_name_headers="对方户名|对方账户名称", payer_account_headers="对方账号|对方账户",
         memo_headers="交易用途|摘要|附言|交易附言|用途", serial_headers="交易流水号|流水号",
         balance_headers="本次余额|账户余额|余额"),
    dict(code="BOCOM", name_zh="交通银行", name_en="Bank of Communications",
         date_headers="交易日期|记账日期|交易时间", amount_headers="发生额|交易金额",
         direction_headers="借贷标志|借贷方向|借/贷", credit_marks="贷|贷方|C|CR|收入|来账",
         payer_name_headers="对方户名|对方账户名称", payer_account_headers="对方账号|对方账户",
         memo_headers="摘要|附言|用途|备注", serial_headers="流水号|交易流水号|会计流水号",
         balance_headers="余额|账户余额"),
    dict(code="CMB", name_zh="招商银行", name_en="China Merchants Bank",
         date_headers="交易日|交易日期|记账日期", credit_headers="贷方金额|贷方发生额",
         debit_headers="借方金额|借方发生额", payer_name_headers="收/付方名称|对方户名",
         payer_account_headers="收/付方帐号|收/付方账号|对方账号",
         memo_headers="摘要|用途|业务摘要|其它摘要|附言", serial_headers="流水号|交易流水号",
         balance_headers="余额|账户余额"),
]
PROFILE_FIELDS = ("credit_headers", "debit_headers", "amount_headers", "direction_headers",
                  "credit_marks", "payer_name_headers", "payer_account_headers", "memo_headers",
                  "serial_headers", "balance_headers")

# Why a row was not imported (the report stores the code; the page says it in the reader's
# language).
SKIP_REASONS = {
    "debit": _l("a debit (money paid out), not a payment received"),
    "fee": _l("a bank fee"),
    "summary": _l("a summary row (total, count or balance), not a transaction"),
    "zero": _l("no amount credited"),
    "bad_date": _l("the date cannot be read"),
    "bad_amount": _l("the amount cannot be read"),
    "bad_direction": _l("neither a credit nor a debit (the 借/贷 column cannot be read)"),
}
METHOD_LABELS = {MM.order_number.value: MM.order_number.label,
                 MM.payer_amount.value: MM.payer_amount.label, MM.hand.value: MM.hand.label,
                 "overpaid": LS.overpaid.label}
FEE_WORDS = ("手续费", "服务费", "工本费", "汇划费", "邮电费", "管理费", "年费", "短信费")
SUMMARY_WORDS = ("合计", "总计", "小计", "笔数", "累计", "本页", "期初余额", "期末余额", "余额合计")
DEBIT_MARKS = ("借", "借方", "D", "DR", "支出", "往账", "付")
# Order numbers as units type them in a transfer's memo: O + 10 digits, typed with spaces,
# in lower case or full-width by Chinese input methods (normalised first).
ORDER_NUMBER = re.compile(r"(?<![0-9])O\d{10}(?![0-9])")
_SPACES = re.compile(r"[\s\u3000\-_－—]+")
_UNIT_SUFFIX = re.compile(r"\((元|人民币|人民币元|rmb|cny)\)$")
_CURRENCY = re.compile(r"(cny|rmb|¥|￥|元|人民币|,|，|\s)", re.I)
_EXCEL_TEXT = re.compile(r'^="?(.*?)"?$')


@dataclass
class Credit:
    row: int
    booked_on: date
    amount_fen: int
    memo: str
    payer_name: str | None
    payer_account: str | None
    serial: str | None
    dedupe_key: str = ""


@dataclass
class Parsed:
    profile: m.BankStatementProfile
    rows_read: int = 0
    credits: list[Credit] = field(default_factory=list)
    skipped: list[list[Any]] = field(default_factory=list)   # [row, code, text]


# ----------------------------------------------------------------------------- profiles ------

def ensure_profiles() -> None:
    """The default bank profiles, for a database that has none (the demo, a fresh install)."""
    if db.session.scalar(sa.select(sa.func.count()).select_from(m.BankStatementProfile)):
        return
    for values in DEFAULT_PROFILES:
        db.session.add(m.BankStatementProfile(**{
            **{f: None for f in PROFILE_FIELDS}, **values, "date_formats": GENERIC_DATES,
            "active": True}))
    db.session.flush()


def _alternatives(text: str | None) -> list[str]:
    return [a for a in (_norm_header(p) for p in (text or "").split("|")) if a]


# ------------------------------------------------------------------------------ reading ------

def _refused(message: Any) -> InputRefused:
    return InputRefused(_l("Check \"%(field)s\": %(problem)s Nothing was imported.",
                           field=FILE_FIELD, problem=message))


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = unicodedata.normalize("NFKC", str(value)).strip()
    # Banks wrap long numbers as ="6222…" or prefix a tab or quote so Excel keeps them text.
    match = _EXCEL_TEXT.match(text)
    if match and text.startswith("="):
        text = match.group(1)
    return text.strip().lstrip("'").strip()


def _norm_header(value: Any) -> str:
    text = re.sub(r"\s+", "", _cell_text(value)).lower()
    return _UNIT_SUFFIX.sub("", text)


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="strict")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data, cp_isolation=["gb18030", "gbk", "gb2312", "big5", "utf_16"]).best()
    if best is None:
        raise _refused(_l("its characters cannot be read (neither UTF-8 nor GBK)."))
    encoding = best.encoding.lower().replace("-", "_")
    # GBK and GB2312 are subsets of GB18030: decoding with it reads every Chinese bank's file.
    if encoding in ("gbk", "gb2312", "cp936", "gb18030"):
        encoding = "gb18030"
    return data.decode(encoding, errors="replace")


def _csv_rows(data: bytes) -> list[list[Any]]:
    text = _decode(data)
    if "\x00" in text:
        raise _refused(_l("this is not a CSV or Excel statement."))
    if re.match(r"\s*<", text) and re.search(r"<table", text[:200000], re.I):
        return _html_rows(text)
    sample = "\n".join(text.splitlines()[:60])
    counts = {d: sample.count(d) for d in (",", "\t", ";", "|")}
    delimiter = max(counts, key=counts.get) if any(counts.values()) else ","
    return [row for row in csv.reader(io.StringIO(text), delimiter=delimiter)]


def _excel_rows(data: bytes) -> list[list[Any]]:
    from python_calamine import CalamineWorkbook

    try:
        workbook = CalamineWorkbook.from_filelike(io.BytesIO(data))
        sheet = workbook.get_sheet_by_index(0)
        return [list(row) for row in sheet.to_python(skip_empty_area=False)]
    except Exception:  # calamine raises its own error types for every damaged workbook
        raise _refused(_l("the Excel file is damaged or protected and cannot be read.")
                       ) from None


class _HtmlTable(HTMLParser):
    """The cells of an HTML table: some banks save their "Excel" export as a web page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            if not self.rows:
                self.rows.append([])
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _html_rows(text: str) -> list[list[Any]]:
    parser = _HtmlTable()
    parser.feed(text)
    parser.close()
    return parser.rows


def read_rows(data: bytes, file_name: str) -> list[list[Any]]:
    """The statement's cells, row by row, whatever its format."""
    name = (file_name or "").lower()
    if not name.endswith(EXTENSIONS):
        raise _refused(_l("this type of file is not accepted: choose the bank's CSV or Excel "
                          "(.xlsx, .xls) export."))
    if not data:
        raise _refused(_l("the file is empty."))
    if data.startswith(b"PK\x03\x04") or data.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return _excel_rows(data)
    head = data[:2048]
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _refused(_l("this is not a CSV or Excel statement."))
    if head.lstrip().lower().startswith((b"%pdf", b"\x89png", b"\xff\xd8")):
        raise _refused(_l("this is not a CSV or Excel statement."))
    return _csv_rows(data)


# ------------------------------------------------------------------------------ layout -------

@dataclass
class Layout:
    profile: m.BankStatementProfile
    header_row: int
    columns: dict[str, int]
    memo_columns: list[int]


SINGLE_FIELDS = ("date", "credit", "debit", "amount", "direction", "payer_name",
                 "payer_account", "serial", "balance")


def _layout_of(profile: m.BankStatementProfile, cells: list[str], index: int) -> Layout | None:
    columns: dict[str, int] = {}
    taken: set[int] = set()
    for name in SINGLE_FIELDS:
        for alternative in _alternatives(getattr(profile, f"{name}_headers")):
            found = [i for i, c in enumerate(cells) if c == alternative and i not in taken]
            if found:
                columns[name] = found[0]
                taken.add(found[0])
                break
    if "date" not in columns or not ({"credit", "amount"} & set(columns)):
        return None
    memos = set(_alternatives(profile.memo_headers))
    memo_columns = [i for i, c in enumerate(cells) if c in memos and i not in taken]
    return Layout(profile, index, columns, memo_columns)


def detect_layout(rows: list[list[Any]], profiles: list[m.BankStatementProfile]
                  ) -> Layout | None:
    """The header row: the first row holding the date and credit (or amount) headers of some
    profile; where several profiles fit, the one that names most of its columns."""
    for index, row in enumerate(rows[:HEADER_SCAN_ROWS]):
        cells = [_norm_header(c) for c in row]
        fits = [layout for layout in (_layout_of(p, cells, index) for p in profiles) if layout]
        if fits:
            return max(fits, key=lambda lay: len(lay.columns) + len(lay.memo_columns))
    return None


# ------------------------------------------------------------------------------ values -------

def _parse_date(value: Any, formats: list[str]) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = _cell_text(value)
    if not text:
        return None
    for fmt in formats:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def _parse_amount(value: Any) -> int | None:
    """Signed fen, None when the cell is blank; ValueError when it cannot be read. Thousands
    separators and currency marks (¥, CNY, 元) are dropped, then the one strict yuan parser."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            text = format(Decimal(repr(value)), "f")
        except InvalidOperation:
            raise ValueError(value) from None
    else:
        text = _CURRENCY.sub("", _cell_text(value))
    if text in ("", "-", "--", "—"):
        return None
    sign = 1
    if text.startswith("(") and text.endswith(")"):
        sign, text = -1, text[1:-1]
    if text[:1] in "+-":
        sign, text = (-1 if text[0] == "-" else 1) * sign, text[1:]
    if "." in text:  # Excel prints 200.5 or 200.500: keep what carries fen
        whole, _dot, frac = text.partition(".")
        frac = frac.rstrip("0")
        text = f"{whole}.{frac}" if frac else whole
    return sign * yuan_to_fen(text)


def _norm_key(text: str | None) -> str:
    return _SPACES.sub("", unicodedata.normalize("NFKC", text or "")).upper()


def order_numbers(memo: str) -> list[str]:
    """The order numbers a payer typed into the memo, spaces, case and width normalised."""
    return sorted(set(ORDER_NUMBER.findall(_norm_key(memo))))


def _key(*parts: Any) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


def parse_statement(data: bytes, file_name: str, profile_id: int | None = None) -> Parsed:
    """Read the statement: its credit lines, and every other row with why it was skipped."""
    rows = read_rows(data, file_name)
    query = sa.select(m.BankStatementProfile).where(m.BankStatementProfile.active.is_(True))
    if profile_id:
        query = sa.select(m.BankStatementProfile).where(m.BankStatementProfile.id == profile_id)
    profiles = list(db.session.scalars(query.order_by(m.BankStatementProfile.id)))
    if profile_id and not profiles:
        raise InputRefused(_l("Check \"%(field)s\": choose one of the banks offered.",
                              field=_l("Bank of the statement")))
    layout = detect_layout(rows, profiles)
    if layout is None:
        raise _refused(_l("no header row with a date column and a credit (or amount) column "
                          "of the bank was found in its first %(rows)d rows. Choose the bank, "
                          "or ask an administrator to add its column names.",
                          rows=HEADER_SCAN_ROWS))
    profile = layout.profile
    formats = [f for f in (profile.date_formats or GENERIC_DATES).split("|") if f] \
        or GENERIC_DATES.split("|")
    credit_marks = {_norm_key(x) for x in (profile.credit_marks or "").split("|") if x}
    debit_marks = {_norm_key(x) for x in DEBIT_MARKS}
    parsed = Parsed(profile=profile)
    seen_content: dict[str, int] = {}
    cols = layout.columns

    def cell(row: list[Any], name: str) -> Any:
        i = cols.get(name)
        return row[i] if i is not None and i < len(row) else None

    for index in range(layout.header_row + 1, len(rows)):
        row = rows[index]
        number = index + 1
        texts = [_cell_text(c) for c in row]
        if not any(texts):
            continue
        parsed.rows_read += 1
        joined = " ".join(t for t in texts if t)
        memo = " / ".join(texts[i] for i in layout.memo_columns if i < len(texts) and texts[i])
        booked_on = _parse_date(cell(row, "date"), formats)
        if booked_on is None:
            summary = any(w in joined for w in SUMMARY_WORDS)
            parsed.skipped.append([number, "summary" if summary else "bad_date",
                                   joined[:80] if summary else _cell_text(cell(row, "date"))])
            continue
        try:
            if "credit" in cols:
                credit = _parse_amount(cell(row, "credit")) or 0
                debit = _parse_amount(cell(row, "debit")) or 0
                amount = credit if credit > 0 else -abs(debit) if debit else credit
                if credit > 0 and debit:
                    raise ValueError("both")
            else:
                amount = _parse_amount(cell(row, "amount")) or 0
                if "direction" in cols:
                    mark = _norm_key(_cell_text(cell(row, "direction")))
                    if mark in credit_marks:
                        amount = abs(amount)
                    elif mark in debit_marks:
                        amount = -abs(amount)
                    else:
                        parsed.skipped.append([number, "bad_direction", mark[:40]])
                        continue
        except ValueError:
            shown = cell(row, "credit") if "credit" in cols else cell(row, "amount")
            parsed.skipped.append([number, "bad_amount", _cell_text(shown)[:40]])
            continue
        if amount < 0:
            fee = any(w in joined for w in FEE_WORDS)
            parsed.skipped.append([number, "fee" if fee else "debit", fmt_money(-amount)])
            continue
        if amount == 0:
            parsed.skipped.append([number, "zero", ""])
            continue
        serial = _cell_text(cell(row, "serial"))[:64] or None
        account = re.sub(r"\s+", "", _cell_text(cell(row, "payer_account")))[:64] or None
        line = Credit(row=number, booked_on=booked_on, amount_fen=amount, memo=memo[:200],
                      payer_name=_cell_text(cell(row, "payer_name"))[:200] or None,
                      payer_account=account, serial=serial)
        if serial:
            line.dedupe_key = _key("serial", serial, booked_on, amount)
        else:
            # Two identical lines in one file are two payments: the n-th of them is keyed n.
            content = _key("content", booked_on, amount, account or "", _norm_key(memo))
            seen_content[content] = seen_content.get(content, 0) + 1
            line.dedupe_key = _key(content, seen_content[content])
        parsed.credits.append(line)
    return parsed


# ------------------------------------------------------------------------------ import -------

def import_statement(actor: Actor, data: bytes, file_name: str,
                     profile_id: int | None = None) -> m.BankStatementImport:
    """Store the statement's new credit lines (a line already imported from any file is a
    duplicate), match them and keep the report."""
    parsed = parse_statement(data, file_name, profile_id)
    file_hash = hashlib.sha256(data).hexdigest()
    batch = m.BankStatementImport(
        file_name=(file_name or "")[:200], file_hash=file_hash, profile_id=parsed.profile.id,
        imported_by_id=actor.user_id, rows_read=parsed.rows_read)
    db.session.add(batch)
    db.session.flush()
    L = m.BankStatementLine
    new: dict[str, int] = {}
    if parsed.credits:
        dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
        unique = {c.dedupe_key: c for c in parsed.credits}
        returned = db.session.execute(
            dialect.insert(L).values([{
                "file_hash": file_hash, "line_no": c.row, "booked_on": c.booked_on,
                "amount_fen": c.amount_fen, "reference": c.memo, "payer_name": c.payer_name,
                "payer_account": c.payer_account, "serial": c.serial,
                "dedupe_key": c.dedupe_key, "import_id": batch.id,
                "imported_by_id": actor.user_id, "status": LS.unmatched}
                for c in unique.values()])
            .on_conflict_do_nothing().returning(L.id, L.dedupe_key)).all()
        new = {r.dedupe_key: r.id for r in returned}
    known = dict(db.session.execute(sa.select(L.dedupe_key, L.id).where(
        L.dedupe_key.in_([c.dedupe_key for c in parsed.credits if c.dedupe_key not in new]))
    ).all()) if len(new) < len(parsed.credits) else {}
    row_of = {new[c.dedupe_key]: c.row for c in parsed.credits if c.dedupe_key in new}
    outcome, notification_ids = _match(actor, list(new.values()))
    matched = [[row_of[lid], lid, number, method]
               for lid, (number, method) in sorted(outcome.items())]
    unmatched = [[row_of[lid], lid] for lid in sorted(new.values()) if lid not in outcome]
    duplicates = [[c.row, known.get(c.dedupe_key)] for c in parsed.credits
                  if c.dedupe_key not in new]
    batch.imported = len(new)
    batch.matched = len(matched)
    batch.unmatched = len(unmatched)
    batch.skipped = len(parsed.skipped)
    batch.duplicates = len(duplicates)
    batch.report = {"skipped": parsed.skipped, "duplicates": duplicates, "matched": matched,
                    "unmatched": unmatched}
    record(actor, "bank_statement_import", batch.id, "import", detail={
        "file_hash": file_hash, "profile": parsed.profile.code, "rows": parsed.rows_read,
        "imported": len(new), "matched": len(matched), "skipped": len(parsed.skipped),
        "duplicates": len(duplicates)})
    db.session.commit()
    enqueue_sends(notification_ids)
    send_noted()
    return batch


# ----------------------------------------------------------------------------- matching ------

@dataclass
class _Plan:
    line: m.BankStatementLine
    order: m.Order
    method: m.StatementMatchMethod
    payment: m.Payment | None = None


def _norm_name(text: str | None) -> str:
    return re.sub(r"[\s()（）]", "", unicodedata.normalize("NFKC", text or ""))


def _match(actor: Actor, line_ids: list[int]) -> tuple[dict[int, tuple[str, str]], list[int]]:
    """Match new lines automatically: the order number in the memo first, then payer and
    amount against a declared transfer. Returns {line id: (order number, method)} and the
    receipts to send after the commit (the caller commits)."""
    if not line_ids:
        return {}, []
    L = m.BankStatementLine
    lines = list(db.session.scalars(sa.select(L).where(
        L.id.in_(line_ids), L.status.in_(LINE_MOVES["match"].from_)).order_by(L.id)))
    wanted, named = {}, set()
    for line in lines:
        found = order_numbers(line.reference)
        if found:
            named.add(line.id)
        if len(found) == 1:
            wanted[line.id] = found[0]
    orders = {o.number: o for o in db.session.scalars(sa.select(m.Order).where(
        m.Order.number.in_(set(wanted.values()))))} if wanted else {}
    plans: list[_Plan] = []
    used_orders: set[int] = set()
    for line in lines:
        order = orders.get(wanted.get(line.id, ""))
        if order is None or order.id in used_orders:
            continue
        if order.status in CLOSED_ORDERS:
            plans.append(_Plan(line, order, MM.order_number))
        elif order.status is m.OrderStatus.pending and order.amount_fen == line.amount_fen:
            used_orders.add(order.id)
            plans.append(_Plan(line, order, MM.order_number))
    planned = {p.line.id for p in plans}
    # A memo that names an order is the payer's word: such a line is not given to another
    # order by payer and amount (finance decides by hand).
    rest = [line for line in lines
            if line.id not in planned and line.id not in named and line.payer_name]
    if rest:
        P = m.Payment
        declared = list(db.session.execute(
            sa.select(P, m.Order).join(m.Order, m.Order.id == P.order_id).where(
                P.channel == m.PaymentChannel.transfer,
                sa.or_(sa.and_(P.status == m.PaymentStatus.pending,
                               m.Order.status == m.OrderStatus.pending),
                       # Confirmed from its voucher before the statement came: the line
                       # proves it.
                       sa.and_(P.status == m.PaymentStatus.confirmed,
                               ~sa.exists().where(L.payment_id == P.id))),
                P.amount_fen.in_({line.amount_fen for line in rest}))).all())
        by_key: dict[tuple[str, int], list[tuple[m.Payment, m.Order]]] = {}
        for payment, order in declared:
            by_key.setdefault((_norm_name(payment.payer_name), payment.amount_fen), []).append(
                (payment, order))
        line_keys = [(_norm_name(line.payer_name), line.amount_fen) for line in rest]
        for line, key in zip(rest, line_keys, strict=True):
            candidates = [(p, o) for p, o in by_key.get(key, []) if o.id not in used_orders]
            # Only a match that cannot be another: one declaration, one such line.
            if len(candidates) == 1 and line_keys.count(key) == 1:
                payment, order = candidates[0]
                used_orders.add(order.id)
                plans.append(_Plan(line, order, MM.payer_amount, payment))
    return _carry_out(actor, plans)


def _carry_out(actor: Actor, plans: list[_Plan]) -> tuple[dict[int, tuple[str, str]], list[int]]:
    """Confirm the payments the lines prove (booking a transfer from the line where none was
    declared), record overpayments for orders already paid, and move the lines."""
    L = m.BankStatementLine
    outcome: dict[int, tuple[str, str]] = {}
    to_confirm: dict[int, _Plan] = {}
    over = [p for p in plans if p.order.status in CLOSED_ORDERS]
    for plan in plans:
        if plan.order.status is not m.OrderStatus.pending:
            continue
        payment = plan.payment or payment_flow.waiting_transfer(plan.order)
        if payment is None:
            payment = _transfer_from_line(actor, plan.order, plan.line)
        to_confirm[payment.id] = plan
    result = confirm_payments(actor, list(to_confirm), PAYMENT_MOVES["statement_match"])
    done = {to_confirm[pid].line.id: (pid, to_confirm[pid]) for pid in result.done}
    if done:
        # The lines follow the payments they confirmed (already authorised: system scope).
        move(actor, L, list(done), LINE_MOVES["match"], label=L.reference, commit=False,
             scope_actor=SYSTEM, values={
                 "payment_id": sa.case({lid: pid for lid, (pid, _p) in done.items()},
                                       value=L.id),
                 "order_id": sa.case({lid: p.order.id for lid, (_pid, p) in done.items()},
                                     value=L.id),
                 "match_method": sa.case({lid: p.method.value for lid, (_pid, p)
                                          in done.items()}, value=L.id)})
        outcome.update({lid: (p.order.number, p.method.value)
                        for lid, (_pid, p) in done.items()})
    for plan in over:
        line = plan.line
        confirmed = _unlinked_confirmed_transfer(plan.order, line)
        if confirmed is not None:
            # Finance confirmed this transfer from its voucher before the statement came: the
            # line is that money, not a second payment.
            moved = move(actor, L, [line.id], LINE_MOVES["match"], label=L.reference,
                         commit=False, scope_actor=SYSTEM, values={
                             "payment_id": confirmed.id, "order_id": plan.order.id,
                             "match_method": plan.method.value})
            if moved.done:
                outcome[line.id] = (plan.order.number, plan.method.value)
            continue
        payment_flow.record_overpayment(
            plan.order, channel=m.PaymentChannel.transfer, amount_fen=line.amount_fen,
            reference=line.serial or f"line:{line.dedupe_key[:32]}", payer_name=line.payer_name,
            payer_account=line.payer_account, actor=actor)
        moved = move(actor, L, [line.id], LINE_MOVES["overpaid"], label=L.reference,
                     commit=False, scope_actor=SYSTEM,
                     values={"order_id": plan.order.id, "match_method": plan.method.value})
        if moved.done:
            outcome[line.id] = (plan.order.number, "overpaid")
    notification_ids = create_notices(receipt_notices(result.done)) if result.done else []
    return outcome, notification_ids


def _unlinked_confirmed_transfer(order: m.Order,
                                 line: m.BankStatementLine) -> m.Payment | None:
    """The order's confirmed transfer of the line's amount that no statement line proves yet."""
    L = m.BankStatementLine
    return db.session.scalars(sa.select(m.Payment).where(
        m.Payment.order_id == order.id, m.Payment.channel == m.PaymentChannel.transfer,
        m.Payment.status == m.PaymentStatus.confirmed,
        m.Payment.amount_fen == line.amount_fen,
        ~sa.exists().where(L.payment_id == m.Payment.id))).first()


def _transfer_from_line(actor: Actor, order: m.Order, line: m.BankStatementLine) -> m.Payment:
    """Money arrived without a declaration: the statement line is the voucher. An open online
    attempt gives way (the order is paid by this transfer)."""
    open_ids = list(db.session.scalars(sa.select(m.Payment.id).where(
        m.Payment.order_id == order.id, m.Payment.status.in_(m.OPEN_PAYMENT_STATUSES))))
    if open_ids:
        move(actor, m.Payment, open_ids, PAYMENT_MOVES["superseded"], label=m.Payment.number,
             commit=False, scope_actor=SYSTEM)
    payment = m.Payment(
        number=f"P{order.edition.start_date.year}{reserve('payment', 1)[0]:06d}",
        order_id=order.id, channel=m.PaymentChannel.transfer, status=m.PaymentStatus.pending,
        amount_fen=line.amount_fen, payer_name=line.payer_name,
        payer_account=line.payer_account, remitted_on=line.booked_on)
    db.session.add(payment)
    db.session.flush()
    record(actor, "payment", payment.id, "statement_line", to_state=payment.status,
           detail={"statement_line": line.id})
    return payment


def candidate_payments(line: m.BankStatementLine, actor: Actor) -> list[m.Payment]:
    """Declared transfers finance may pick for an unmatched line: waiting ones, same amount
    first."""
    P = m.Payment
    query = scoped(sa.select(P).join(m.Order, m.Order.id == P.order_id).where(
        P.channel == m.PaymentChannel.transfer, P.status == m.PaymentStatus.pending,
        m.Order.status == m.OrderStatus.pending), P, actor, READ)
    return list(db.session.scalars(query.order_by(
        sa.case((P.amount_fen == line.amount_fen, 0), else_=1), P.id).limit(50)))


def match_line(actor: Actor, line_id: Any, order_number: str | None = None,
               payment_id: Any = None) -> str:
    """Finance matches one unmatched line by hand: to a declared transfer it picks, or to an
    order number. Money for an order already paid is recorded as an overpayment. Returns the
    order number."""
    line = get_scoped(m.BankStatementLine, line_id, actor, WRITE)
    if line is None:
        raise WorkflowError(_l("No such statement line."), 404)
    db.session.execute(sa.select(m.BankStatementLine.id).where(
        m.BankStatementLine.id == line.id).with_for_update())
    db.session.refresh(line)
    if line.status not in LINE_MOVES["match"].from_:
        raise WorkflowError(_l("This line is already matched."))
    payment = None
    if payment_id not in (None, ""):
        payment = get_scoped(m.Payment, payment_id, actor, READ)
        if payment is None or payment.channel is not m.PaymentChannel.transfer \
                or payment.status is not m.PaymentStatus.pending:
            raise WorkflowError(_l("Choose a declared transfer that waits for finance."))
        order = payment.order
    else:
        number = _norm_key(order_number)
        if not number:
            raise InputRefused(_l("Check \"%(field)s\": choose a declared transfer or enter "
                                  "an order number.", field=_l("Order number")))
        order = db.session.scalars(sa.select(m.Order).where(m.Order.number == number)
                                   ).one_or_none()
        if order is None:
            raise WorkflowError(_l("No order has the number %(number)s.", number=number))
    db.session.execute(sa.select(m.Order.id).where(m.Order.id == order.id).with_for_update())
    db.session.refresh(order)
    if order.status is m.OrderStatus.pending:
        if order.amount_fen != line.amount_fen:
            raise WorkflowError(_l("The amounts differ: the order is for %(order)s, the line "
                                   "credits %(line)s.", order=fmt_money(order.amount_fen),
                                   line=fmt_money(line.amount_fen)))
    outcome, notification_ids = _carry_out(actor, [_Plan(line, order, MM.hand, payment)])
    if line.id not in outcome:
        db.session.rollback()
        raise WorkflowError(_l("The order was paid or changed meanwhile; reload the page."))
    record(actor, "bank_statement_line", line.id, "match_by_hand", detail={
        "order": order.number, "payment": payment.number if payment else None,
        "outcome": outcome[line.id][1]})
    db.session.commit()
    enqueue_sends(notification_ids)
    send_noted()
    return order.number


def skip_reason(code: str) -> Any:
    return SKIP_REASONS.get(code, code)


def method_label(code: str) -> Any:
    return METHOD_LABELS.get(code, code)
