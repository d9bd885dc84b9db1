"""The data interface every view, REST API, export and action queries through: FAB's
SQLAInterface with each query limited to the actor's scope, search filters that refuse values
their column cannot hold, bounded list counts, and the selections actions and exports work on.

Flask-AppBuilder's `base_filters` protect only the list, show, edit and delete of one view.
Here the scope lives in the data interface itself, so actions (which load rows by primary key),
relation drop-downs (`get_related_interface`), related views, the REST API and file downloads
all see only what the actor may see, and changes use the stricter write scope.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from functools import reduce
from typing import Any, Iterable

import sqlalchemy as sa
from dateutil import parser as dateutil_parser
from flask import current_app
from flask_appbuilder.models.filters import Filters
from flask_appbuilder.models.sqla import filters as fab_filters
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_babel import lazy_gettext as _l
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import RelationshipProperty, aliased, joinedload

from app import models as m
from app.clock import SHANGHAI
from app.extensions import db
from app.input_checks import field_label
from app.scoping.rules import get_scoped, row_id, scoped
from app.search_keys import id_number_key, mobile_key, name_search_tokens, name_tokens_suffice
from app.workflow.errors import InputRefused


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


class FilterSearchKey(fab_filters.BaseFilter):
    """Exact search on a number's search key (a column whose info names its "search_key"):
    the typed number is keyed as the stored ones are (app.search_keys), so the database
    answers from the key's index and the list keeps showing the number masked. A mobile
    search for what is no phone number at all is refused, naming the field."""

    name = _l("Is exactly")
    arg_name = "key"

    def apply(self, query: Any, value: Any) -> Any:
        text = str(value or "").strip()
        if not text:
            return query
        prop = sa.inspect(self.model).attrs[self.column_name]
        if prop.info["search_key"] == "mobile":
            key = mobile_key(text)
            if key is None:
                raise InputRefused(_l("Check \"%(field)s\": enter a whole phone number, "
                                      "such as 131 2345 6789 or +44 7400 123456.",
                                      field=field_label(self.column_name)))
        else:
            key = id_number_key(text)
        query, field = fab_filters.get_field_setup_query(query, self.model, self.column_name)
        return query.filter(field == key)


def _token_target(model: type, column_name: str) -> tuple[Any, Any, Any] | None:
    """(the select a search-only column reads its text from, or None for a column of the model
    itself; the text column; the model's column holding the text's search tokens) for a column
    that declares its "search_tokens" (a person's name on its registration), else None."""
    prop = sa.inspect(model).attrs.get(column_name)
    if not isinstance(prop, sa.orm.ColumnProperty) or "search_tokens" not in prop.info:
        return None
    column, inner = prop.columns[0], None
    if isinstance(column, sa.sql.elements.Label) and isinstance(
            column.element, sa.sql.selectable.ScalarSelect):
        inner = column.element.element
        column = inner.selected_columns[0]
    return inner, column, sa.inspect(model).columns[prop.info["search_tokens"]]


class _NameTokens:
    """A text search on a name (starts with, ends with, contains, equals) that PostgreSQL
    answers from the name's GIN-indexed tokens on the row itself (app.search_keys; indexed
    beside the row's delegation, so a delegation's scope and the tokens are one bitmap): the
    typed text's tokens must all be present, then the name itself is compared, so the rows
    are exactly those the comparison alone finds. % and _ are searched as typed, not as
    wildcards; the text is read as NFKC (full-width letters as ASCII), as names are stored.
    SQLite compares the names only."""

    # "Contains" one or two characters: the tokens alone are the answer (name_tokens_suffice):
    # no name is read, and PostgreSQL estimates the rows from the tokens' statistics.
    tokens_suffice = False

    def name_condition(self, column: Any, text: str) -> Any:
        raise NotImplementedError

    def apply(self, query: Any, value: Any) -> Any:
        text = unicodedata.normalize("NFKC", str(value)).strip()
        if not text:
            return query   # an empty search box narrows nothing
        inner, column, token_column = _token_target(self.model, self.column_name)
        if len(text) > column.type.length:
            return query.filter(sa.false())   # longer than any name can be
        tokens = name_search_tokens(text)
        if tokens and db.session.get_bind().dialect.name == "postgresql":
            query = query.filter(token_column.op("@>")(
                sa.bindparam(None, tokens, type_=postgresql.ARRAY(sa.Text()))))
            if self.tokens_suffice and name_tokens_suffice(text):
                return query
        condition = self.name_condition(column, text)
        if inner is not None:
            condition = sa.exists(inner.with_only_columns(sa.literal(1)).where(condition))
        return query.filter(condition)


class FilterNameStartsWith(_NameTokens, fab_filters.FilterStartsWith):
    def name_condition(self, column: Any, text: str) -> Any:
        return column.istartswith(text, autoescape=True)


class FilterNameEndsWith(_NameTokens, fab_filters.FilterEndsWith):
    def name_condition(self, column: Any, text: str) -> Any:
        return column.iendswith(text, autoescape=True)


class FilterNameContains(_NameTokens, fab_filters.FilterContains):
    tokens_suffice = True

    def name_condition(self, column: Any, text: str) -> Any:
        return column.icontains(text, autoescape=True)


class FilterNameEqual(_NameTokens, fab_filters.FilterEqual):
    def name_condition(self, column: Any, text: str) -> Any:
        return column == text


# FAB's text filters a name's tokens answer, replaced in place (the filter indexes in URLs,
# `_flt_2_person_name`, stay FAB's).
_NAME_FILTERS = {fab_filters.FilterStartsWith: FilterNameStartsWith,
                 fab_filters.FilterEndsWith: FilterNameEndsWith,
                 fab_filters.FilterContains: FilterNameContains,
                 fab_filters.FilterEqual: FilterNameEqual}


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
        ("is_search_key", [FilterSearchKey]),
        ("is_optional_enum", [fab_filters.FilterEqual, fab_filters.FilterNotEqual, FilterEmpty]),
        ("is_reference", [fab_filters.FilterEqual, fab_filters.FilterNotEqual]),
    ) + tuple(
        (test, [_shanghai(f) for f in classes] if test == "is_datetime" else classes)
        for test, classes in fab_filters.SQLAFilterConverter.conversion_table
    )

    def convert(self, col_name: str) -> Any:
        filters = super().convert(col_name) or []
        if _token_target(self.datamodel.obj, col_name) is not None:
            filters = [_NAME_FILTERS.get(type(f), type(f))(col_name, self.datamodel)
                       for f in filters]
        if self.datamodel._is_expression(col_name):
            # The name filters make their own EXISTS (with the tokens inside it).
            filters = [f if isinstance(f, _NameTokens)
                       else _through_exists(type(f))(col_name, self.datamodel) for f in filters]
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

    def is_search_key(self, col_name: str) -> bool:
        """A search-only column holding a number's search key (declared with info
        "search_key")."""
        prop = sa.inspect(self.obj).attrs.get(col_name)
        return prop is not None and "search_key" in prop.info

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


def filtered_ids(datamodel: ScopedInterface, search_columns: Iterable[str],
                 base_filters: list[list[Any]], params: list[list[Any]]) -> sa.Select:
    """The ids of the rows a list shows for its search filters `params` ([[column, index,
    [values]], …], kept as plain data by a background task): the list's base filters (FAB's
    `[[column, filter class, value]]`) and the current actor's scope always apply; a column
    that is not searchable or an unknown filter index is ignored (as FAB's list does)."""
    filters = datamodel.get_filters(list(search_columns))
    searchable = filters.get_search_filters()
    for column, index, values in params:
        if column in searchable and 0 <= index < len(searchable[column]):
            filters.add_filter_index(column, index, list(values))
    joined = filters.get_joined_filters(datamodel.get_filters().add_filter_list(base_filters))
    model = datamodel.obj
    query = datamodel._apply_inner_all(db.session.query(model), joined)
    return query.with_entities(model.id).order_by(None).statement
