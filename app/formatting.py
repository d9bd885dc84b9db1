"""How values read on screen and in exports: money in yuan, times in Shanghai, labels for enums;
and the one reading of a yuan amount back into integer fen."""
from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from flask_babel import gettext as _

from app.clock import SHANGHAI

# Digits with at most two decimals: how providers and banks write a yuan amount.
_YUAN = re.compile(r"\d{1,12}(\.\d{1,2})?")


def fmt_money(fen: int | None) -> str:
    """Integer fen as yuan with two decimals, e.g. 12345 -> ¥123.45 (exact: no float)."""
    if fen is None:
        return ""
    return f"¥{fen_to_yuan(fen):,}"


def fen_to_yuan(fen: int) -> Decimal:
    return (Decimal(int(fen)) / Decimal(100)).quantize(Decimal("0.01"))


def yuan_to_fen(text: str | None) -> int:
    """A yuan amount as integer fen, exactly ("200.00" -> 20000, "0.1" -> 10, with Decimal);
    anything but digits with at most two decimals is a ValueError."""
    if text is None or not _YUAN.fullmatch(text):
        raise ValueError(f"malformed yuan amount {text!r}")
    return int(Decimal(text) * 100)


def fmt_datetime(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def fmt_date(value: date | None) -> str:
    return value.isoformat() if value else ""


def fmt_bool(value: Any) -> str:
    return _("Yes") if value else _("No")


def fmt_value(value: Any) -> str:
    """Any value as the reader should see it: labels, Yes/No, Beijing time, lists joined."""
    if value is None:
        return ""
    if hasattr(value, "label"):
        return str(value.label)
    if isinstance(value, bool):
        return fmt_bool(value)
    if isinstance(value, datetime):
        return fmt_datetime(value)
    if isinstance(value, date):
        return fmt_date(value)
    if isinstance(value, (list, tuple, set)):
        return ", ".join(fmt_value(v) for v in value)
    return str(value)


def mask_id_number(number: str | None) -> str:
    """Keep the first four and last four characters: 310101199001011234 -> 3101**********1234."""
    if not number:
        return ""
    if len(number) <= 8:
        return number[:1] + "*" * (len(number) - 2) + number[-1:] if len(number) > 2 else "**"
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


def mask_mobile(number: str | None) -> str:
    """Keep the first three and last four digits: +8613812345678 -> 138****5678."""
    if not number:
        return ""
    digits = number.strip()
    if digits.startswith("+86"):
        digits = digits[3:]
    if len(digits) <= 7:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def mask_email(address: str | None) -> str:
    """Keep the name's first character and the domain: zhang@example.com -> z****@example.com."""
    if not address or "@" not in address:
        return ""
    name, domain = address.split("@", 1)
    return f"{name[:1]}****@{domain}"
