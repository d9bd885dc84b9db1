"""The business clock: real time, or (for the demo and tests) real time shifted to a chosen start.

`CIIE_NOW` (ISO 8601 with offset) makes the app believe it is that moment when it starts; time
then runs on from there. Deadlines, entry dates and timestamps all read this clock.
"""
from __future__ import annotations

import os
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")

_offset = None


def _init_offset():
    global _offset
    start = os.environ.get("CIIE_NOW")
    if start:
        target = datetime.fromisoformat(start)
        if target.tzinfo is None:
            target = target.replace(tzinfo=SHANGHAI)
        _offset = target - datetime.now(timezone.utc)
    else:
        _offset = False


def set_now(moment: datetime | None) -> None:
    """Shift the clock so that it reads `moment` now (None: back to real time)."""
    global _offset
    _offset = (moment - datetime.now(timezone.utc)) if moment else False


def is_shifted() -> bool:
    if _offset is None:
        _init_offset()
    return bool(_offset)


def now() -> datetime:
    """Aware UTC now, on the business clock."""
    if _offset is None:
        _init_offset()
    real = datetime.now(timezone.utc)
    return real + _offset if _offset else real


def now_shanghai() -> datetime:
    return now().astimezone(SHANGHAI)


def today_shanghai() -> date:
    return now_shanghai().date()


def end_of_day_shanghai(day: date) -> datetime:
    """The last second of a day in Shanghai: 'by 12 October' means until 23:59:59 that day."""
    return datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=SHANGHAI)
