"""Globals for templates: the demo clock, translated strings for the batch-action script."""
from __future__ import annotations

from typing import Any

from flask import Flask
from flask_babel import gettext as _

from app import clock
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
    )
    app.jinja_env.filters["money"] = fmt_money
    app.jinja_env.filters["local_dt"] = fmt_datetime
