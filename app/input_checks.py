"""Input the system cannot read or store is refused whole, with a 400 that names the field in
the user's language, before anything changes: control characters anywhere in a request (URL,
form, file names, JSON), text longer than its column (checked at every flush, so every view,
API, job and command is covered), page numbers and sizes a query cannot take. (An upload over
MAX_CONTENT_LENGTH is answered by app.errors with the page of the form it came from.)"""
from __future__ import annotations

import re
from typing import Any, Iterator, Mapping
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Flask, current_app, g, has_request_context, request
from flask_appbuilder.forms import DynamicForm
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from app.workflow.errors import InputRefused

# C0 controls but tab, line feed and carriage return (PostgreSQL refuses NUL; Excel files and
# XML refuse the others), DEL and C1 controls, and lone UTF-16 surrogates that JSON escapes can
# smuggle in (they cannot be encoded).
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Pages count from 0; OFFSET (page × size) must stay within a bigint.
MAX_PAGE = 2 ** 31 - 1
# The largest page the list header offers (FAB's page-size menu goes up to 100).
MAX_PAGE_SIZE = 100
_PAGE_ARG = re.compile(r"page_\w+")
_PAGE_SIZE_ARG = re.compile(r"psize_\w+")
_FILTER_ARG = re.compile(r"_flt_\d_(.+)")

# Form fields that are no column (columns are labelled by app.labels.COLUMN_LABELS).
FORM_FIELD_LABELS = {
    "password": _l("Password"),
    "confirm": _l("Confirm the password"),
    "q": _l("Search"),
    # The person import's files (app/workflow/person_import.py names them alike).
    "person_sheet": _l("Spreadsheet of persons"),
    "person_photos": _l("Photos (zip)"),
}
_labels: dict[str, Any] = dict(FORM_FIELD_LABELS)


def field_label(name: str) -> Any:
    """How the user knows a field: the current view's label, else the shared column label,
    else its name (with anything unprintable replaced)."""
    view = _current_view()
    own = getattr(view, "label_columns", None) or {}
    return own.get(name) or _labels.get(name) or CONTROL_CHARACTERS.sub("?", name)[:60]


def _current_view() -> Any:
    if not has_request_context() or not request.blueprint:
        return None
    views = current_app.extensions.setdefault("ciie_views_by_endpoint", {})
    if not views:
        views.update({v.endpoint: v for v in current_app.appbuilder.baseviews})
    return views.get(request.blueprint)


def control_characters_refused(name: str) -> InputRefused:
    return InputRefused(_l("Check \"%(field)s\": it contains control characters, which cannot "
                           "be stored. Nothing was changed.", field=field_label(name)))


def too_long(name: str, most: int, length: int) -> InputRefused:
    return InputRefused(_l("Check \"%(field)s\": at most %(most)d characters (%(length)d "
                           "entered). Nothing was changed.",
                           field=field_label(name), most=most, length=length))


def check_lengths(model: type, values: Mapping[str, Any]) -> None:
    """Refuse text longer than its column of `model` (for set-based UPDATEs, which no flush
    sees)."""
    columns = sa.inspect(model).columns
    for key, value in values.items():
        if key in columns:
            _check_length(key, columns[key], value)


def _check_length(key: str, column: Any, value: Any) -> None:
    most = getattr(column.type, "length", None)
    if most and isinstance(value, str) and not isinstance(column.type, sa.Enum) \
            and len(value) > most:
        raise too_long(key, most, len(value))


@sa.event.listens_for(Session, "before_flush")
def _refuse_text_longer_than_its_column(session: Session, _context: Any, _instances: Any
                                        ) -> None:
    # PostgreSQL would refuse the statement with a DataError that names no field (a 500);
    # SQLite would keep the text whole.
    # Text read from files (bank statements, imports) never passed the request check: NUL and
    # lone surrogates, which cannot be stored at all, are refused here too.
    for obj in (*session.new, *session.dirty):
        state = sa.inspect(obj)
        for attr in state.mapper.column_attrs:
            value = state.dict.get(attr.key)
            if isinstance(value, str):
                if _UNSTORABLE.search(value):
                    raise control_characters_refused(attr.key)
                _check_length(attr.key, attr.columns[0], value)


def _request_texts() -> Iterator[tuple[str, str]]:
    """(field name, text) of everything the request sends: URL parts and arguments, form
    fields, file names and JSON (keys and values)."""
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str):
            yield name, value
    for source in (request.args, request.form):
        for name, value in source.items(multi=True):
            name = name or ""     # a multipart part may come without a name
            match = _FILTER_ARG.fullmatch(name)
            yield (match[1] if match else name), name + value
    for name, upload in request.files.items(multi=True):
        yield name or "", (name or "") + (upload.filename or "")
    if request.is_json:
        yield from _json_texts("", request.get_json(silent=True))


def _json_texts(name: str, value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield name, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key, key
            yield from _json_texts(key, item)
    elif isinstance(value, list):
        for item in value:
            yield from _json_texts(name, item)


def refuse_unreadable_input() -> None:
    """Before any view: control characters anywhere, and page arguments OFFSET/LIMIT cannot
    take (FAB hands them to the database as they come)."""
    for name, text in _request_texts():
        if CONTROL_CHARACTERS.search(text):
            raise control_characters_refused(name)
    for name, value in request.args.items(multi=True):
        if _PAGE_ARG.fullmatch(name) and not _integer_within(value, 0, MAX_PAGE):
            raise InputRefused(_l("Check \"%(field)s\": pages are numbered from 0 to "
                                  "%(last)d.", field=_l("Page"), last=MAX_PAGE))
        if _PAGE_SIZE_ARG.fullmatch(name) and not _integer_within(value, 1, MAX_PAGE_SIZE):
            raise InputRefused(_l("Check \"%(field)s\": a page shows 1 to %(most)d rows.",
                                  field=_l("Rows per page"), most=MAX_PAGE_SIZE))


def _integer_within(text: str, low: int, high: int) -> bool:
    return re.fullmatch(r"[0-9]{1,12}", text) is not None and low <= int(text) <= high


_validate_form = DynamicForm.validate


def _validate_and_note(form: DynamicForm, extra_validators: Any = None) -> bool:
    valid = _validate_form(form, extra_validators)
    if not valid and has_request_context():
        g.invalid_form = True
    return valid


# Every form here (FAB's generated ones and ours) is a DynamicForm: a page showing one again
# with its errors answers 400, not FAB's 200, like every other refusal of bad input.
DynamicForm.validate = _validate_and_note


def _invalid_form_is_a_bad_request(response: Any) -> Any:
    if g.get("invalid_form") and request.method == "POST" and response.status_code == 200:
        response.status_code = 400
    return response


def form_page() -> tuple[str, str] | None:
    """The page of the form a POST came from: the same URL when it shows the form on GET,
    else the page on this site that posted it."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    candidates = [(request.path, request.query_string.decode("latin-1"))]
    referrer = urlsplit(request.referrer or "")
    if referrer.netloc == request.host:
        candidates.append((referrer.path, referrer.query))
    for path, query in candidates:
        try:
            adapter.match(path, method="GET")
        except HTTPException:
            continue
        return path, query
    return None


def register_input_checks(app: Flask, labels: Mapping[str, Any]) -> None:
    """Wire the checks: first of all before-request hooks (before CSRF reads the form), the
    form status, the upload limit; `labels` name the columns in refusals."""
    _labels.update(labels)
    app.before_request_funcs.setdefault(None, []).insert(0, refuse_unreadable_input)
    app.after_request(_invalid_form_is_a_bad_request)
