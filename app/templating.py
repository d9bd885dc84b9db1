"""Globals for templates: the demo clock, translated strings for the scripts, the calendar's
names in the page's language."""
from __future__ import annotations

import re
from typing import Any

from babel import Locale
from flask import Flask
from flask_babel import get_locale
from flask_babel import gettext as _

from app import clock
from app.clock import today_shanghai
from app.formatting import fmt_datetime, fmt_money


def js_messages() -> dict[str, str]:
    return {
        "no_rows": _("No row selected"),
        "reason_prompt": _("Reason (the unit will see it):"),
        "reason_required": _("Enter the reason."),
        "ok": _("OK"),
        "cancel": _("Cancel"),
        "confirm_some": _("Apply this action to %(count)s selected record(s)?"),
        "confirm_all": _("Apply this action to ALL %(count)s records matching the current "
                         "filter?"),
        "count_failed": _("The matching records could not be counted; nothing was done."),
        "saved_at": _("Saved at %(time)s"),
        "save_failed": _("Not saved yet: the connection failed. Retrying."),
        "working": _("Working…"),
        # The searching select boxes (select2) of every form.
        "select_remove_all": _("Remove all items"),
        "select_no_results": _("No results found"),
        "select_searching": _("Searching…"),
        "select_error_loading": _("The results could not be loaded."),
        "select_loading_more": _("Loading more results…"),
    }


def _picker_pattern(cldr: str) -> str:
    """A CLDR date pattern (`y年M月`, `MMMM y`) in bootstrap-datepicker's letters."""
    letters = {"y": "yyyy", "M": "m", "MM": "mm", "MMM": "M", "MMMM": "MM"}
    return re.sub(r"y+|M+", lambda match: letters.get(match.group(), match.group()), cldr)


def picker_locale() -> dict[str, Any]:
    """The calendar's names in the page's language, from CLDR (Sunday first, as
    bootstrap-datepicker counts), and the business day it opens on when the box is empty."""
    locale = get_locale() or Locale("en")
    days = locale.days["format"]
    months = locale.months["format"]

    def sunday_first(names: dict[int, str]) -> list[str]:
        return [names[6]] + [names[i] for i in range(6)]

    today = today_shanghai()
    return {
        "code": str(locale),
        "days": sunday_first(days["wide"]),
        "daysShort": sunday_first(days["abbreviated"]),
        # The one-letter names where they tell the days apart (日一二…), else two (Su Mo…).
        "daysMin": sunday_first(days["narrow"] if len(set(days["narrow"].values())) == 7
                                else days["short"]),
        "months": [months["wide"][i] for i in range(1, 13)],
        "monthsShort": [months["abbreviated"][i] for i in range(1, 13)],
        "titleFormat": _picker_pattern(locale.datetime_skeletons["yMMMM"].pattern),
        "weekStart": (locale.first_week_day + 1) % 7,
        "time": _("Time"),
        "opensOn": {"year": today.year, "month": today.month - 1, "day": today.day},
    }


def _cjk(text: str) -> bool:
    return any("\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" for ch in text)


def greeting_name(user: Any) -> str:
    """Whom the home page greets: the organisation an account acts for (a unit, a delegation,
    an organiser), else the person's name, written without a space between Chinese parts."""
    for organisation in (user.unit, user.delegation, user.organiser):
        if organisation is not None:
            return organisation.name
    first, last = (user.first_name or "").strip(), (user.last_name or "").strip()
    joiner = "" if _cjk(first) or _cjk(last) else " "
    return joiner.join(part for part in (first, last) if part)


def register_template_helpers(app: Flask) -> None:
    app.jinja_env.globals.update(
        ciie_greeting_name=greeting_name,
        ciie_clock_shifted=clock.is_shifted,
        ciie_now_local=lambda: fmt_datetime(clock.now()),
        ciie_js_messages=js_messages,
        ciie_calendar=picker_locale,
    )
    app.jinja_env.filters["money"] = fmt_money
    app.jinja_env.filters["local_dt"] = fmt_datetime
