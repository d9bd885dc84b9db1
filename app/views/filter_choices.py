"""Search filters whose choices are rows (a delegation, a sub-delegation, a unit…) load them
when the user opens the drop-down, not with every page: FAB renders every filter's field into
each list page, and its choices query and options were a fifth of a persons page's time.

The page's select holds only the blank choice and the values the list is filtered by;
app/static/select_search.js asks the view's `filter_choices/<column>` (the same scoped query
the field would have run, searched by the typed text, one page at a time) when it opens.
"""
from __future__ import annotations

import re
from typing import Any

from flask import request, url_for
from flask_appbuilder.fields import QuerySelectField
from flask_babel import gettext as _
from markupsafe import Markup
from wtforms.fields.core import UnboundField
from wtforms.widgets import html_params

from app.input_checks import MAX_PAGE
from app.workflow.errors import InputRefused

CHOICES_PAGE_SIZE = 50
BLANK = "__None"


def filtered_values(name: str) -> set[str]:
    """The values this request's list is filtered by on the search field `name`
    (`_flt_<operation>_<name>=…`, possibly several)."""
    pattern = re.compile(r"_flt_\d+_" + re.escape(name))
    return {value for key in request.args if pattern.fullmatch(key)
            for value in request.args.getlist(key)}


class FilterChoicesWidget:
    """FAB's Select2 drop-down of a search filter, its choices fetched when it opens."""

    def __init__(self, view: Any) -> None:
        self.view = view

    def __call__(self, field: QuerySelectField, **kwargs: Any) -> Markup:
        kwargs.setdefault("id", field.id)
        options = []
        if field.allow_blank:
            options.append((BLANK, field.blank_text))
        chosen = filtered_values(field.name) - {BLANK}
        if chosen:
            # Only a filtered list reads the choices, to name the chosen ones in its select.
            options += [(pk, label) for pk, label, *_rest in field.iter_choices()
                        if pk in chosen]
        html = Markup("").join(
            Markup('<option value="{}"{}>{}</option>').format(
                pk, Markup(" selected") if index == 0 else "", label)
            for index, (pk, label) in enumerate(options))
        params = html_params(
            name=field.name, class_="form-control ciie-select-search ciie-filter-choices",
            data_placeholder=_("Select Value"),
            data_endpoint=url_for(f"{self.view.endpoint}.filter_choices", column=field.name),
            **kwargs)
        return Markup("<select {}>{}</select>").format(Markup(params), html)


def load_choices_lazily(view: Any) -> None:
    """Give every row drop-down of the view's search form (FAB's relation filters and a
    view's own QuerySelectFields) the FilterChoicesWidget."""
    form = view.search_form
    for name, unbound in list(vars(form).items()) if form is not None else ():
        if (not isinstance(unbound, UnboundField)
                or unbound.field_class is not QuerySelectField):
            continue
        lazy = UnboundField(unbound.field_class, *unbound.args,
                            **{**unbound.kwargs, "widget": FilterChoicesWidget(view)})
        lazy.creation_counter = unbound.creation_counter
        setattr(form, name, lazy)


def choices_page(view: Any, column: str) -> dict[str, Any] | None:
    """One page (from 0) of the search field's choices whose label has the typed text, as
    select2 reads it; None if the column has no such drop-down."""
    form = view.search_form.refresh()
    field = form._fields.get(column)
    if field is None or not isinstance(field.widget, FilterChoicesWidget):
        return None
    page = request.args.get("page", "0")
    if not re.fullmatch(r"[0-9]{1,12}", page) or int(page) > MAX_PAGE:
        raise InputRefused(_("Check \"%(field)s\": pages are numbered from 0 to %(last)d.",
                             field=_("Page"), last=MAX_PAGE))
    text = " ".join(request.args.get("q", "").split())[:100].casefold()
    rows = [{"id": pk, "text": str(label)} for pk, label, *_rest in field.iter_choices()
            if pk != BLANK or not text]
    if text:
        rows = [row for row in rows if text in row["text"].casefold()]
    start = int(page) * CHOICES_PAGE_SIZE
    return {"results": rows[start:start + CHOICES_PAGE_SIZE],
            "pagination": {"more": len(rows) > start + CHOICES_PAGE_SIZE}}
