"""The request's language, and bilingual data: pick the zh or en variant of a record's text."""
from __future__ import annotations

from flask import current_app, has_request_context, request
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


def select_locale() -> str:
    """Flask-Babel's locale selector. Pages keep FAB's choice (the navbar switch, remembered in
    the session); API clients have no session, so /api/ requests follow FAB's `_l_` argument,
    then the Accept-Language header, then the default (zh)."""
    languages = current_app.config["LANGUAGES"]
    if has_request_context() and request.path.startswith("/api/"):
        asked = request.args.get("_l_")
        if asked in languages:
            return asked
        return request.accept_languages.best_match(
            languages, default=current_app.config["BABEL_DEFAULT_LOCALE"])
    return current_app.appbuilder.bm.get_locale()
