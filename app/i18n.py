"""Helpers for bilingual data: pick the zh or en variant of a record's text for the reader."""
from __future__ import annotations

from flask import has_request_context
from flask_babel import get_locale


def current_language() -> str:
    if not has_request_context():
        return "zh"
    locale = get_locale()
    return "en" if locale is not None and locale.language == "en" else "zh"


def pick(zh: str | None, en: str | None) -> str:
    """The text in the reader's language, falling back to the other one."""
    if current_language() == "en":
        return en or zh or ""
    return zh or en or ""
