"""Globals for templates: the demo clock, translated strings for the batch-action script."""
from __future__ import annotations

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
        "saved_at": _("Saved at %(time)s"),
        "save_failed": _("Not saved yet: the connection failed. Retrying."),
        "working": _("Working…"),
    }


def register_template_helpers(app: Flask) -> None:
    app.jinja_env.globals.update(
        ciie_clock_shifted=clock.is_shifted,
        ciie_now_local=lambda: fmt_datetime(clock.now()),
        ciie_js_messages=js_messages,
    )
    app.jinja_env.filters["money"] = fmt_money
    app.jinja_env.filters["local_dt"] = fmt_datetime
