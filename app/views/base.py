"""The base of every model view and API: all reads go through the actor's scope.

Flask-AppBuilder's `base_filters` protect only the list, show, edit and delete of one view.
Here the scope lives in the data interface itself, so actions (`action_post` loads rows by
primary key), relation drop-downs (`get_related_interface`), related views, the REST API and
file downloads all see only what the actor may see, and changes use the stricter write scope.
"""
from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import reduce
from typing import Any, Callable, Iterable

import sqlalchemy as sa
from dateutil import parser as dateutil_parser
from flask import (
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    request,
    send_from_directory,
    url_for,
)
from flask_appbuilder import ModelView
from flask_appbuilder import forms as fab_forms
from flask_appbuilder.actions import action as fab_action
from flask_appbuilder.baseviews import expose
from flask_appbuilder.fields import EnumField
from flask_appbuilder.fieldwidgets import DateTimePickerWidget
from flask_appbuilder.models.filters import Filters
from flask_appbuilder.models.sqla import filters as fab_filters
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_appbuilder.urltools import get_filter_args
from flask_appbuilder.widgets import ListWidget
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import RelationshipProperty, aliased, joinedload
from wtforms import DateTimeField
from wtforms.fields.core import UnboundField
from wtforms.widgets import html_params

from app import models as m
from app.clock import SHANGHAI
from app.extensions import db, queue
from app.formatting import fmt_money, fmt_value
from app.input_checks import field_label
from app.security import current_actor, get_scoped, row_id, scoped, write_scope
from app.views.labels import COLUMN_LABELS
from app.workflow import BatchResult, WorkflowError
from app.workflow.audit import record
from app.workflow.errors import InputRefused

log = logging.getLogger(__name__)


class LabelledEnumField(EnumField):
    """FAB labels enum choices with their raw values; ours show the translated label."""

    def __init__(self, enum_class, enums, **kwargs):
        super().__init__(enum_class, enums, **kwargs)
        if enum_class is not None and issubclass(enum_class, m.LabelledEnum):
            self.choices = [(name, enum_class[name].label) for name in enums]


# FAB's form converter looks the field class up in its module at form-build time.
fab_forms.EnumField = LabelledEnumField


class ShanghaiDateTimeField(DateTimeField):
    """A moment typed and shown as Beijing wall-clock time, held as an aware datetime.

    FAB's DateTimeField yields naive datetimes, which `AwareDateTime` columns refuse."""

    def process_formdata(self, valuelist: list[str]) -> None:
        super().process_formdata(valuelist)
        if self.data is not None:
            self.data = self.data.replace(tzinfo=SHANGHAI)

    def _value(self) -> str:
        if self.raw_data:
            return " ".join(self.raw_data)
        if self.data is None:
            return ""
        return self.data.astimezone(SHANGHAI).strftime(self.format[0])


class ShanghaiDateTimePickerWidget(DateTimePickerWidget):
    """FAB's picker renders `field.data` as is (UTC, with an offset the field cannot parse
    back); this one renders the field's own text: what was typed, or Beijing time."""

    def __call__(self, field: ShanghaiDateTimeField, **kwargs: Any) -> Markup:
        kwargs.setdefault("id", field.id)
        kwargs.setdefault("name", field.name)
        return Markup(self.data_template % {
            "text": html_params(type="text", value=field._value(), **kwargs)})


def localise_datetime_fields(form: type | None, model: type) -> None:
    """Swap the DateTimeFields FAB generated for `AwareDateTime` columns of `model` for
    ShanghaiDateTimeFields, keeping their label, validators, description and position."""
    if form is None:
        return
    columns = sa.inspect(model).columns
    for name in list(vars(form)):
        unbound = vars(form)[name]
        if (not isinstance(unbound, UnboundField) or name not in columns
                or not isinstance(columns[name].type, m.AwareDateTime)
                or issubclass(unbound.field_class, ShanghaiDateTimeField)
                or not issubclass(unbound.field_class, DateTimeField)):
            continue
        local = UnboundField(ShanghaiDateTimeField, *unbound.args,
                             **{**unbound.kwargs, "widget": ShanghaiDateTimePickerWidget()})
        local.creation_counter = unbound.creation_counter
        setattr(form, name, local)


class ShanghaiTimeFilter(fab_filters.BaseFilter):
    """A search filter on a timestamp: the typed time is Beijing time (FAB's own filters
    pass a naive datetime, which `AwareDateTime` columns refuse)."""

    def apply(self, query: Any, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = dateutil_parser.parse(value)
            except (ValueError, OverflowError):
                value = None
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=SHANGHAI)
        return super().apply(query, value)


def _shanghai(filter_class: type) -> type:
    return type(f"Shanghai{filter_class.__name__}", (ShanghaiTimeFilter, filter_class), {})


class FilterEmpty(fab_filters.BaseFilter):
    """Rows where an optional value is not set yet (e.g. persons not tagged yet); the value
    given with the filter is ignored."""

    name = _l("Is empty")
    arg_name = "empty"

    def apply(self, query: Any, value: Any) -> Any:
        query, field = fab_filters.get_field_setup_query(query, self.model, self.column_name)
        return query.filter(field.is_(None))


class _Criterion:
    """Stands in for a query to catch the criterion a FAB filter adds."""

    def __init__(self) -> None:
        self.criteria: list[Any] = []

    def filter(self, criterion: Any) -> "_Criterion":
        self.criteria.append(criterion)
        return self


@functools.cache
def _through_exists(filter_class: type) -> type:
    """FAB's filter on a column read from another table (a column_property's correlated scalar
    subquery, e.g. a person's name on its registration), applied as EXISTS over that table:
    PostgreSQL runs it as one semi-join instead of the subquery once per row (a name search
    over 100,000 registrations: 1.2 s → 0.4 s, bench/README.md)."""

    def apply(self: Any, query: Any, value: Any) -> Any:
        caught = _Criterion()
        filter_class.apply(self, caught, value)
        inner: list[sa.Select] = []

        def column_of(element: Any) -> Any:
            if isinstance(element, sa.sql.selectable.ScalarSelect):
                inner.append(element.element)
                return element.element.selected_columns[0]
            return None

        if len(caught.criteria) != 1:   # not the shape this rewrite knows: FAB's own filter
            return filter_class.apply(self, query, value)
        condition = sa.sql.visitors.replacement_traverse(caught.criteria[0], {}, column_of)
        if len(inner) != 1:
            return filter_class.apply(self, query, value)
        return query.filter(sa.exists(inner[0].with_only_columns(sa.literal(1))
                                      .where(condition)))

    return type(f"Exists{filter_class.__name__}", (filter_class,), {"apply": apply})


def _not_a_value(column: str, value: Any) -> InputRefused:
    return InputRefused(_l("Check \"%(field)s\": \"%(value)s\" is not one of its values.",
                           field=field_label(column), value=str(value)[:40]))


_BOOLEANS = {"y": True, "yes": True, "true": True, "1": True, "on": True,
             "n": False, "no": False, "false": False, "0": False, "off": False}


def _checked_filter_value(flt: fab_filters.BaseFilter, value: Any) -> Any:
    """The search value as its column holds it, or refused naming the field: FAB hands it to
    SQL as it comes (an unknown enum value, a number past the column's range, a non-date or
    any text for a yes/no column is a database error there, a 500) or silently searches for
    NULL instead."""
    if isinstance(flt, (FilterEmpty, fab_filters.FilterRelation)):
        return value   # ignored, or looked up as a row id (an unknown one finds no row)
    column, datamodel = flt.column_name, flt.datamodel
    sql_type = getattr(datamodel.list_columns.get(column), "type", None)
    if isinstance(sql_type, sa.types.TypeDecorator):
        sql_type = sql_type.impl   # AwareDateTime is a DateTime
    if isinstance(sql_type, sa.Boolean) and not isinstance(value, list):
        if str(value).lower() not in _BOOLEANS:
            raise _not_a_value(column, value)
        return _BOOLEANS[str(value).lower()]
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, (str, int, float)):
            raise _not_a_value(column, item)
        if item == "" and isinstance(sql_type, (sa.Integer, sa.Date, sa.DateTime)):
            continue   # FAB reads an empty number or date as "is empty" (statistics link so)
        if isinstance(sql_type, sa.Enum):
            if str(item) not in (sql_type.enum_class.__members__ if sql_type.enum_class
                                 else sql_type.enums):
                raise _not_a_value(column, item)
        elif isinstance(sql_type, sa.Integer):
            bits = 64 if isinstance(sql_type, sa.BigInteger) else 32
            low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
            if not (re.fullmatch(r"-?[0-9]{1,19}", str(item)) and low <= int(item) <= high):
                raise InputRefused(_l("Check \"%(field)s\": enter a whole number from "
                                      "%(low)d to %(high)d.", field=field_label(column),
                                      low=low, high=high))
        elif isinstance(sql_type, (sa.Date, sa.DateTime)) and not _is_date(item):
            raise InputRefused(_l("Check \"%(field)s\": enter a date, or a date and time, "
                                  "such as 2022-11-05 or 2022-11-05 09:00.",
                                  field=field_label(column)))
        elif isinstance(sql_type, sa.String) and not isinstance(item, str):
            raise _not_a_value(column, item)
    return value


def _is_date(text: Any) -> bool:
    try:
        dateutil_parser.parse(text)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


@functools.cache
def _checked(filter_class: type) -> type:
    """FAB's filter, refusing values its column cannot hold (see _checked_filter_value)."""

    def apply(self: Any, query: Any, value: Any) -> Any:
        return filter_class.apply(self, query, _checked_filter_value(self, value))

    return type(f"Checked{filter_class.__name__}", (filter_class,), {"apply": apply})


class ScopedFilterConverter(fab_filters.SQLAFilterConverter):
    """FAB's filters, with timestamps read in Beijing time; optional enums can be searched
    for "is empty", and reference columns (another table's id) by equality only. Every
    search value is checked against its column first."""

    # New tests go first (the first matching test wins) so FAB's own indexes stay as they are.
    conversion_table = (
        ("is_optional_enum", [fab_filters.FilterEqual, fab_filters.FilterNotEqual, FilterEmpty]),
        ("is_reference", [fab_filters.FilterEqual, fab_filters.FilterNotEqual]),
    ) + tuple(
        (test, [_shanghai(f) for f in classes] if test == "is_datetime" else classes)
        for test, classes in fab_filters.SQLAFilterConverter.conversion_table
    )

    def convert(self, col_name: str) -> Any:
        filters = super().convert(col_name) or []
        if self.datamodel._is_expression(col_name):
            filters = [_through_exists(type(f))(col_name, self.datamodel) for f in filters]
        return [_checked(type(f))(col_name, self.datamodel) for f in filters]


class CheckedFilters(Filters):
    """A list's search filters: a filter index the column does not offer (`_flt_9_status`)
    is refused naming the field; FAB indexes its list with it (an IndexError, a 500)."""

    def add_filter_index(self, column_name: str, filter_instance_index: int,
                         value: Any) -> None:
        offered = self._all_filters.get(column_name)
        if offered is not None and not 0 <= filter_instance_index < len(offered):
            raise InputRefused(_l("Check \"%(field)s\": this list cannot be filtered by it.",
                                  field=field_label(column_name)))
        super().add_filter_index(column_name, filter_instance_index, value)


class MoreThan(int):
    """A list's record count that stopped at its limit: there are more rows than this (the
    list template says so; pagination runs up to the limit)."""

    exceeds = True


class ScopedInterface(SQLAInterface):
    """SQLAInterface whose every query is limited to the current actor's scope."""

    filter_converter_class = ScopedFilterConverter
    # Set by ScopedModelView for the interface its list pages use (see query_count).
    count_limited = False

    def __init__(self, obj: type, options: Iterable[Any] = ()) -> None:
        super().__init__(obj)
        self.options = list(options)
        # Relation paths already eager-loaded (loader options all print as "Load(Model)", so
        # they are told apart by path, not by their text).
        self._eager_paths: set[tuple[str, ...]] = set()

    def _apply_inner_all(self, query, *args, **kwargs):
        query = scoped(query, self.obj)
        if self.options:
            query = query.options(*self.options)
        return super()._apply_inner_all(query, *args, **kwargs)

    def query_count(self, query: Any, filters: Any = None,
                    select_columns: list[str] | None = None) -> int:
        """A list page's record count, counted up to LIST_COUNT_LIMIT: past it the page says
        "more than …" and costs the same for 20,000 rows or 200,000; the exact number of a
        large result is asked for when needed (the "all matching" confirmation). Only the
        views' lists are bounded (`count_limited`); the REST API counts exactly."""
        if not self.count_limited:
            return super().query_count(query, filters, select_columns)
        limit = current_app.config["LIST_COUNT_LIMIT"]
        inner = self._apply_inner_all(query, filters, select_columns=select_columns,
                                      aliases_mapping={})
        ids = inner.with_entities(self.obj.id).order_by(None).limit(limit + 1).subquery()
        count = db.session.scalar(sa.select(sa.func.count()).select_from(ids))
        return MoreThan(limit) if count > limit else count

    def apply_order_by(self, query: Any, order_column: str, order_direction: str,
                       aliases_mapping: dict | None = None, bypass_many_to_many: bool = False,
                       add_pk: bool = False) -> Any:
        """Sort by a column of a related row, however deep (`order.unit.name`): FAB joins
        only the first relation and then reads the leaf off it (a 500), and skips its join
        when a search filter already mentions the table (then the filter's EXISTS loses its
        FROM). Each relation on the path is joined here under its own alias."""
        if "." not in order_column:
            return super().apply_order_by(query, order_column, order_direction,
                                          aliases_mapping, bypass_many_to_many, add_pk)
        *path, leaf = order_column.split(".")
        target: Any = self.obj
        for name in path:
            relation = sa.inspect(target).mapper.relationships.get(name)
            if relation is None or relation.uselist:
                return query   # not a column this list can sort by (FAB skips these too)
            alias = aliased(relation.mapper.class_)
            query = query.outerjoin(getattr(target, name).of_type(alias))
            target = alias
        direction = sa.asc if order_direction == "asc" else sa.desc
        return query.order_by(direction(getattr(target, leaf)), direction(self.obj.id))

    def get_filters(self, search_columns: Any = None, search_filters: Any = None
                    ) -> CheckedFilters:
        return CheckedFilters(self.filter_converter_class, self,
                              search_columns=search_columns or [],
                              search_filters=search_filters)

    def get(self, id: Any, *args: Any, **kwargs: Any) -> Any:
        # A tampered id the column cannot hold is not found, like any other unknown id.
        if row_id(self.obj, id) is None:
            return None
        return super().get(id, *args, **kwargs)

    def _is_expression(self, col_name: str) -> bool:
        """A column_property over another table (search-only columns) is a Label, not a Column."""
        return isinstance(self.list_columns.get(col_name), sa.sql.elements.Label)

    def is_nullable(self, col_name: str) -> bool:
        return True if self._is_expression(col_name) else super().is_nullable(col_name)

    def is_unique(self, col_name: str) -> bool:
        return False if self._is_expression(col_name) else super().is_unique(col_name)

    def is_pk(self, col_name: str) -> bool:
        return False if self._is_expression(col_name) else super().is_pk(col_name)

    def is_fk(self, col_name: str) -> bool:
        return False if self._is_expression(col_name) else super().is_fk(col_name)

    def is_optional_enum(self, col_name: str) -> bool:
        """An enum column that may be NULL (a person's tag before tagging)."""
        return (self.is_enum(col_name) and not self._is_expression(col_name)
                and super().is_nullable(col_name))

    def is_reference(self, col_name: str) -> bool:
        """A search-only column holding another table's id (declared with info "references")."""
        prop = sa.inspect(self.obj).attrs.get(col_name)
        return prop is not None and "references" in prop.info

    def get_related_interface(self, col_name: str) -> "ScopedInterface":
        return ScopedInterface(self.get_related_model(col_name))

    def get_related_obj(self, col_name: str, value: Any) -> Any:
        return get_scoped(self.get_related_model(col_name), value)

    @staticmethod
    def _get_attr_value(item: Any, col: str) -> Any:
        """The raw value (FAB turns enums into their codes; our formatters show labels)."""
        try:
            value = reduce(getattr, col.split("."), item)
        except AttributeError:
            return ""
        return value() if callable(value) and not isinstance(value, m.LabelledEnum) else value

    def eager_load_dotted(self, columns: Iterable[str]) -> None:
        """Join the many-to-one relations that list columns read, dotted or shown as a whole
        ("unit_registration.delegation"): no query per row."""
        for column in columns:
            model = self.obj
            loader = None
            path: tuple[str, ...] = ()
            for part in column.split("."):
                attr = getattr(model, part, None)
                if not isinstance(getattr(attr, "property", None), RelationshipProperty):
                    break
                loader = joinedload(attr) if loader is None else loader.joinedload(attr)
                model = attr.property.mapper.class_
                path += (part,)
            if loader is not None and path not in self._eager_paths:
                self.options.append(loader)
                self._eager_paths.add(path)


@dataclass
class Selection:
    """The rows an action applies to: ids already limited to the actor's write scope."""

    model: type
    ids: sa.Select

    def count(self) -> int:
        return db.session.scalar(sa.select(sa.func.count()).select_from(self.ids.subquery()))

    def id_list(self) -> list[int]:
        return list(db.session.scalars(self.ids))


def batch_action(name: str, text: Any, confirmation: Any = None, icon: str | None = None,
                 multiple: bool = True, single: bool = True) -> Callable:
    """Declare an action that receives a Selection and returns a BatchResult."""
    return fab_action(name, text, confirmation, icon, multiple, single)


def attempt(call: Callable[[], Any], success: str | None = None) -> bool:
    """Run one workflow call for a form or button: on refusal roll back and flash the reason
    (a 404 refusal aborts with 404); on success flash `success`."""
    try:
        call()
    except InputRefused:
        raise   # the whole request is refused with its 400 (app.errors), not just flashed
    except WorkflowError as exc:
        db.session.rollback()
        if exc.status_code == 404:
            abort(404)
        flash(str(exc.message), "danger")
        return False
    if success:
        flash(success, "success")
    return True


def flash_batch_result(result: BatchResult, limit: int = 20) -> None:
    if result.done_count:
        flash(_("Done for %(count)d record(s).", count=result.done_count), "success")
    if result.refused:
        lines = [Markup("{}: {}").format(r.label, str(r.reason))
                 for r in result.refused[:limit]]
        more = len(result.refused) - limit
        if more > 0:
            lines.append(escape(_("and %(count)d more", count=more)))
        flash(Markup(escape(_("Not done for %(count)d record(s):", count=len(result.refused)))
                     + Markup("<br>") + Markup("<br>").join(lines)), "warning")
    if not result.done_count and not result.refused:
        flash(_("Nothing to do."), "info")


class CiieListWidget(ListWidget):
    template = "ciie/widgets/list.html"


class ScopedModelView(ModelView):
    """A ModelView whose list, show, edit, delete, actions, drop-downs and downloads are scoped."""

    list_template = "ciie/list.html"
    list_widget = CiieListWidget
    show_template = "ciie/show.html"
    # Columns holding storage keys of uploaded files this view may serve through /download/.
    file_columns: tuple[str, ...] = ()
    # The record type written to the audit trail (default: the table name).
    audit_name: str | None = None

    # One translated title for the view; add, edit and show titles derive from it.
    title: Any = None
    # Actions that ask for a reason (shown to the unit) before they run.
    reason_actions: tuple[str, ...] = ()
    # The background operation (app.tasks) that writes the listed rows to a file: "Export".
    export_operation: str | None = None

    def __init__(self, **kwargs: Any) -> None:
        self.label_columns = {**COLUMN_LABELS, **(type(self).label_columns or {})}
        self.formatters_columns = dict(type(self).formatters_columns or {})
        super().__init__(**kwargs)
        if not self.file_columns and "can_download" in self.base_permissions:
            self.base_permissions.remove("can_download")
        if not self.export_operation and "can_export" in self.base_permissions:
            self.base_permissions.remove("can_export")
        if isinstance(self.datamodel, ScopedInterface):
            self.datamodel.eager_load_dotted(list(self.list_columns) + list(self.show_columns))
            self.datamodel.count_limited = True
        self.order_columns = [c for c in self.order_columns if self._sortable(c)]
        self._add_default_formatters()

    def _sortable(self, column: str) -> bool:
        """Only mapped SQL attributes sort; a Python property ("photo", "waiting") cannot."""
        model = self.datamodel.obj
        *path, last = column.split(".")
        for name in path:
            relation = sa.inspect(model).relationships.get(name)
            if relation is None:
                return False
            model = relation.mapper.class_
        return last in sa.inspect(model).column_attrs

    def post_add_redirect(self):
        """After adding, show the list the record joined (FAB goes back, which may be home)."""
        return redirect(url_for(f"{self.endpoint}.list"))

    def _init_forms(self) -> None:
        super()._init_forms()
        # Every view that edits timestamps takes and shows them in Beijing time.
        localise_datetime_fields(self.add_form, self.datamodel.obj)
        localise_datetime_fields(self.edit_form, self.datamodel.obj)

    def _init_titles(self) -> None:
        if self.title is not None:
            self.list_title = self.list_title or self.title
            self.show_title = self.show_title or _l("Details")
            self.add_title = self.add_title or _l("Add")
            self.edit_title = self.edit_title or _l("Edit")
        super()._init_titles()

    def _get_list_widget(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("reason_actions", self.reason_actions)
        if kwargs.get("order_column") and kwargs["order_column"] not in self.order_columns:
            # A hand-written ?_oc_ for a column that cannot sort: the list keeps its own order.
            kwargs["order_column"] = kwargs["order_direction"] = ""
        return super()._get_list_widget(*args, **kwargs)

    @property
    def record_type(self) -> str:
        return self.audit_name or self.datamodel.obj.__tablename__

    def _add_default_formatters(self) -> None:
        """Every shown column gets a formatter: money in yuan, labels for enums, Beijing time."""
        for column in set(self.list_columns) | set(self.show_columns):
            if column not in self.formatters_columns:
                self.formatters_columns[column] = (
                    fmt_money if column.endswith("_fen") else fmt_value)

    # ---- reads and writes of one record -------------------------------------------------

    @expose("/edit/<pk>", methods=["GET", "POST"])
    @has_access
    def edit(self, pk):
        with write_scope():
            return super().edit(pk)

    @expose("/delete/<pk>", methods=["GET", "POST"])
    @has_access
    def delete(self, pk):
        with write_scope():
            return super().delete(pk)

    def before_save(self, item: Any, created: bool) -> None:
        """Domain checks before a create or update; raise WorkflowError to refuse."""

    def before_delete(self, item: Any) -> None:
        """Domain checks before a delete; raise WorkflowError to refuse."""

    def _changes(self, item: Any) -> dict[str, list[Any]]:
        state = sa.inspect(item)
        changes = {}
        for attr in state.mapper.column_attrs:
            hist = state.attrs[attr.key].history
            if hist.has_changes():
                old = hist.deleted[0] if hist.deleted else None
                new = hist.added[0] if hist.added else None
                changes[attr.key] = [_jsonable(old), _jsonable(new)]
        return changes

    def _save(self, item: Any, created: bool) -> bool:
        try:
            self.before_save(item, created)
            changes = self._changes(item)
            db.session.add(item)
            db.session.flush()
            record(current_actor(), self.record_type, item.id, "create" if created else "update",
                   detail={"changes": changes})
            db.session.commit()
        except InputRefused:
            raise
        except WorkflowError as exc:
            db.session.rollback()
            flash(str(exc.message), "danger")
            return False
        except IntegrityError:
            db.session.rollback()
            log.info("integrity error saving %s", self.record_type, exc_info=True)
            flash(_("This conflicts with an existing record; nothing was saved."), "danger")
            return False
        flash(_("Saved."), "success")
        return True

    def _add(self):
        is_valid_form = True
        get_filter_args(self._filters, disallow_if_not_in_search=False)
        exclude_cols = self._filters.get_relation_cols()
        form = self.add_form.refresh()
        if request.method == "POST":
            self._fill_form_exclude_cols(exclude_cols, form)
            if form.validate():
                self.process_form(form, True)
                item = self.datamodel.obj()
                form.populate_obj(item)
                if self._save(item, created=True):
                    self.post_add(item)
                    return None
                is_valid_form = False
            else:
                is_valid_form = False
        if is_valid_form:
            self.update_redirect()
        return self._get_add_widget(form=form, exclude_cols=exclude_cols)

    def _edit(self, pk):
        item = self.datamodel.get(pk, self._base_filters)
        if not item:
            abort(404)
        if request.method == "POST":
            get_filter_args(self._filters, disallow_if_not_in_search=False)
            exclude_cols = self._filters.get_relation_cols()
            form = self.edit_form.refresh(request.form)
            self._fill_form_exclude_cols(exclude_cols, form)
            form._id = pk
            if form.validate():
                self.process_form(form, False)
                form.populate_obj(item)
                if self._save(item, created=False):
                    self.post_update(item)
                    return None
                item = self.datamodel.get(pk, self._base_filters)
            return self._get_edit_widget(form=form, exclude_cols=exclude_cols)
        return super()._edit(pk)

    def _delete(self, pk):
        item = self.datamodel.get(pk, self._base_filters)
        if not item:
            abort(404)
        try:
            self.before_delete(item)
            item_id = item.id
            db.session.delete(item)
            db.session.flush()
            record(current_actor(), self.record_type, item_id, "delete")
            db.session.commit()
        except WorkflowError as exc:
            db.session.rollback()
            flash(str(exc.message), "danger")
            return
        except IntegrityError:
            db.session.rollback()
            flash(_("Other records depend on this one; it was not deleted."), "danger")
            return
        self.post_delete(item)
        flash(_("Deleted."), "success")
        self.update_redirect()

    # ---- actions ------------------------------------------------------------------------

    def _selection_from_pks(self, pks: list[str]) -> Selection:
        model = self.datamodel.obj
        parsed = {row_id(model, pk) for pk in pks}
        if not parsed or None in parsed:
            abort(400)
        ids = sorted(parsed)
        stmt = scoped(sa.select(model.id).where(model.id.in_(ids)), model)
        found = set(db.session.scalars(stmt))
        if found != set(ids):
            # A tampered or out-of-scope id: refuse the whole request, change nothing.
            abort(404)
        return Selection(model, sa.select(model.id).where(model.id.in_(ids)))

    def filter_params(self) -> list[list[Any]]:
        """This request's search filters (`_flt_<index>_<column>=value`) as plain data, which
        a background task keeps and applies later: [[column, index, [values]], …]."""
        params = []
        for arg in sorted(request.args):
            match = re.fullmatch(r"_flt_(\d)_(.+)", arg)
            if match:
                params.append([match[2], int(match[1]), request.args.getlist(arg)])
        return params

    def filtered_ids(self, params: list[list[Any]]) -> sa.Select:
        """The ids of the rows this view lists for `filter_params()`: its base filters and the
        current actor's scope always apply; a column that is not searchable or an unknown
        filter index is ignored (as FAB's list does)."""
        filters = self.datamodel.get_filters(self.search_columns)
        searchable = filters.get_search_filters()
        for column, index, values in params:
            if column in searchable and 0 <= index < len(searchable[column]):
                filters.add_filter_index(column, index, list(values))
        joined = filters.get_joined_filters(self._base_filters)
        model = self.datamodel.obj
        query = self.datamodel._apply_inner_all(db.session.query(model), joined)
        return query.with_entities(model.id).order_by(None).statement

    def _selection_from_filters(self) -> Selection:
        return Selection(self.datamodel.obj, self.filtered_ids(self.filter_params()))

    def run_operation(self, name: str, selection: Selection):
        """Run a registered batch operation on the selection: inline when small (or without
        Redis), else as a background task whose page shows progress and then the report."""
        from app.tasks import OPERATIONS, start_task

        actor = current_actor()
        ids = selection.id_list()
        params = {"ids": ids, "reason": request.form.get("reason")}
        if len(ids) > current_app.config["BATCH_INLINE_MAX"] and not queue.inline:
            task = start_task(actor, name, params, len(ids))
            return redirect(url_for("TaskView.show", task_id=task.id))
        return OPERATIONS[name](actor, params, lambda *_args: None)

    def _back_to_list(self):
        """Back to the page the action was started from (with its filters), else the list."""
        referrer = request.referrer or ""
        if referrer.startswith(request.host_url):
            return redirect(referrer)
        return redirect(url_for(f"{self.endpoint}.list"))

    def _run_action(self, name: str, build: Callable[[], Selection]):
        action = self.actions.get(name)
        if action is None:
            abort(404)
        permission = self.get_action_permission_name(name)
        if not self.appbuilder.sm.has_access(permission, self.class_permission_name):
            abort(403)
        with write_scope():
            selection = build()
            try:
                result = action.func(selection)
            except InputRefused:
                raise
            except WorkflowError as exc:
                db.session.rollback()
                flash(str(exc.message), "danger")
                return self._back_to_list()
        if isinstance(result, BatchResult):
            flash_batch_result(result)
            return self._back_to_list()
        return result

    @expose("/action/<string:name>/<pk>", methods=["POST"])
    def action(self, name, pk):
        return self._run_action(name, lambda: self._selection_from_pks([pk]))

    @expose("/action_post", methods=["POST"])
    def action_post(self):
        name = request.form.get("action", "")
        if request.form.get("all_matching") == "1":
            return self._run_action(name, self._selection_from_filters)
        return self._run_action(name, lambda: self._selection_from_pks(
            request.form.getlist("rowid")))

    @expose("/count")
    @has_access
    @permission_name("list")
    def count(self):
        """The exact number of rows the list shows for this request's filters (a large list
        only counts up to LIST_COUNT_LIMIT): the "all matching" confirmation asks for it."""
        selection = Selection(self.datamodel.obj, self.filtered_ids(self.filter_params()))
        return jsonify(count=selection.count())

    @expose("/export", methods=["POST"])
    @has_access
    def export(self):
        """Export the rows of the current filter: a background task (inline without Redis)
        that runs as this user; its page shows the progress, then the file."""
        from app.i18n import current_language
        from app.tasks import start_task

        if not self.export_operation:
            abort(404)
        actor = current_actor()
        params = {"filters": self.filter_params(), "language": current_language()}
        total = Selection(self.datamodel.obj, self.filtered_ids(params["filters"])).count()
        task = start_task(actor, self.export_operation, params, total)
        record(actor, m.BackgroundTask.__tablename__, task.id, "export",
               detail={"operation": self.export_operation, "filters": params["filters"]})
        db.session.commit()
        return redirect(url_for("TaskView.show", task_id=task.id))

    # ---- files --------------------------------------------------------------------------

    @expose("/download/<string:filename>")
    @has_access
    def download(self, filename):
        if not self.file_columns:
            abort(404)
        model = self.datamodel.obj
        match = sa.or_(*(getattr(model, c) == filename for c in self.file_columns))
        found = db.session.scalar(scoped(sa.select(model.id).where(match), model).limit(1))
        if found is None:
            abort(404)
        return send_from_directory(current_app.config["UPLOAD_FOLDER"], filename,
                                   as_attachment=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, m.LabelledEnum):
        return value.value
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def download_link(endpoint: str) -> Callable[[str | None], Markup]:
    """A formatter turning a storage key into a link to the view's scoped download."""
    def fmt(key: str | None) -> Markup:
        if not key:
            return Markup("")
        href = url_for(f"{endpoint}.download", filename=key)
        return Markup('<a href="{}"><i class="fa fa-download"></i> {}</a>').format(
            href, _("Download"))

    return fmt


def list_url(view_endpoint: str, **filters: Any) -> str:
    """The URL of a list view with `_flt_0_<col>` filters (used by home-page counts)."""
    args = {f"_flt_0_{k}": v for k, v in filters.items()}
    return url_for(f"{view_endpoint}.list", **args)

