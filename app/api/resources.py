"""Read APIs over the same scoped data interface as the views."""
from __future__ import annotations

import copy
from typing import Any

from flask_appbuilder.api import ModelRestApi
from flask_appbuilder.api.convert import Model2SchemaConverter
from flask_appbuilder.api.schemas import get_list_schema
from flask_appbuilder.const import API_FILTERS_RIS_KEY, API_PAGE_INDEX_RIS_KEY
from flask_appbuilder.exceptions import (
    InvalidColumnFilterFABException,
    InvalidOperationFilterFABException,
)
from flask_appbuilder.models.filters import Filters
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from marshmallow import fields
from marshmallow.fields import Field

from app import models as m
from app.extensions import db
from app.labels import COLUMN_LABELS
from app.scoping.actor import write_scope
from app.scoping.interface import ScopedInterface
from app.workflow.editions import current_edition
from app.workflow.errors import InputRefused

# FAB hands any page number to OFFSET, where a negative (or huge) one is a database error:
# pages count from 0 and stay within what OFFSET can take.
MAX_PAGE = 2 ** 31 - 1
PAGED_LIST_SCHEMA = copy.deepcopy(get_list_schema)
PAGED_LIST_SCHEMA["properties"][API_PAGE_INDEX_RIS_KEY].update(minimum=0, maximum=MAX_PAGE)


class CiieModel2SchemaConverter(Model2SchemaConverter):
    def _column2enum(self, datamodel: Any, column: Any) -> Field:
        field = super()._column2enum(datamodel, column)
        # FAB forgets that a nullable enum column holds null (a person's tag before the lock):
        # the OpenAPI document then refused the null the API answers.
        field.allow_none = datamodel.is_nullable(column.name)
        return field

    def _column2field(self, datamodel: Any, column: Any, nested: bool = True,
                      parent_schema_name: str | None = None) -> Field:
        # Search-only expressions (column_property over another table) are never sent or set
        # through the API; FAB's converter would read Column attributes a Label lacks.
        if datamodel._is_expression(column.name):
            return fields.Raw(dump_only=True)
        return super()._column2field(datamodel, column, nested, parent_schema_name)


class ScopedModelRestApi(ModelRestApi):
    """ModelRestApi on a ScopedInterface: lists, gets and related fields are scoped; changes
    use the write scope."""

    allow_browser_login = False
    version = "v1"
    model2schemaconverter = CiieModel2SchemaConverter
    _apispec_parameter_schemas = {**ModelRestApi._apispec_parameter_schemas,
                                  "get_list_schema": PAGED_LIST_SCHEMA}

    def __init__(self) -> None:
        self.label_columns = {**COLUMN_LABELS, **(type(self).label_columns or {})}
        super().__init__()

    def operation_helper(self, path: Any = None, operations: Any = None, methods: Any = None,
                         func: Any = None, **kwargs: Any) -> None:
        super().operation_helper(path=path, operations=operations, methods=methods, func=func,
                                 **kwargs)
        # FAB's docstrings describe three answers wrongly: ids are integers, and the add and
        # edit columns of _info are lists of column descriptions.
        for operation in operations.values():
            answer = operation.get("responses", {}).get(200, {})
            properties = (answer.get("content", {}).get("application/json", {})
                          .get("schema", {}).get("properties", {}))
            if "id" in properties:
                properties["id"]["type"] = "integer"
            if "ids" in properties:
                properties["ids"]["items"] = {"type": "integer"}
            for name in ("add_columns", "edit_columns"):
                if name in properties:
                    properties[name] = {"type": "array", "items": {"type": "object"}}

    def _get_field_info(self, field: Field, filter_rel_field: dict[str, Any],
                        page: int | None = None, page_size: int | None = None) -> dict[str, Any]:
        info = super()._get_field_info(field, filter_rel_field, page, page_size)
        # FAB translates a missing description as gettext(""): the catalogue's header.
        description = self.description_columns.get(field.name)
        info["description"] = str(description) if description else ""
        return info

    def get_list_headless(self, **kwargs: Any) -> Any:
        page = kwargs.get("rison", {}).get(API_PAGE_INDEX_RIS_KEY, 0)
        if not 0 <= page <= MAX_PAGE:
            return self.response_400(message=_("Pages are numbered from 0 to %(last)s.",
                                                last=MAX_PAGE))
        try:
            return super().get_list_headless(**kwargs)
        except InputRefused as exc:   # a search value its column cannot hold
            db.session.rollback()
            return self.response_400(message=str(exc.message))

    def _handle_filters_args(self, rison_args: dict[str, Any]) -> Any:
        """Each filter with an operator its column offers, or the request is a 400 naming the
        field: FAB silently drops an unknown operator (the answer then lists everything) and
        looks a known one up in a registry shared by every view, not the column's own."""
        self._filters.clear_filters()
        offered = self._filters.get_search_filters()
        for wanted in rison_args.get(API_FILTERS_RIS_KEY, []):
            if not isinstance(wanted, dict) or not {"col", "opr", "value"} <= set(wanted):
                raise InvalidOperationFilterFABException(
                    _("Each filter names its column (col), operator (opr) and value."))
            column, operator = str(wanted["col"]), str(wanted["opr"])
            label = self.label_columns.get(column, column)
            if column not in self.search_columns or column not in offered:
                raise InvalidColumnFilterFABException(
                    _("Check \"%(field)s\": this list cannot be filtered by it.", field=label))
            found = [f for f in offered[column] if f.arg_name == operator]
            if not found:
                raise InvalidOperationFilterFABException(_(
                    "Check \"%(field)s\": \"%(operator)s\" is not a filter it offers "
                    "(%(offered)s).", field=label, operator=operator[:20],
                    offered=", ".join(f.arg_name for f in offered[column])))
            self._filters.add_filter(column, type(found[0]), wanted["value"])
        return self._filters.get_joined_filters(self._base_filters)

    def put_headless(self, pk):
        with write_scope():
            return super().put_headless(pk)

    def delete_headless(self, pk):
        with write_scope():
            return super().delete_headless(pk)


class CurrentEditionInterface(ScopedInterface):
    """Lists of the current edition, as the web's, unless the request filters on the edition
    (`(col:edition,opr:rel_o_m,value:<id>)`); what an actor reaches of earlier editions is
    the scope's to say (a unit that registered afresh reaches none)."""

    def query(self, filters: Filters | None = None, *args: Any, **kwargs: Any) -> Any:
        if filters is None or all(f.column_name != "edition" for f in filters.filters):
            filters = filters.copy() if filters is not None else Filters(
                self.filter_converter_class, self)
            filters.add_filter("edition_id", self.FilterEqual, current_edition().id)
        return super().query(filters, *args, **kwargs)


class PersonRegistrationApi(ScopedModelRestApi):
    resource_name = "persons"
    class_permission_name = "PersonRegistrationApi"
    datamodel = CurrentEditionInterface(m.PersonRegistration)
    list_title = show_title = _l("Persons")
    include_route_methods = {"get", "get_list", "info"}
    list_columns = ["id", "status", "tag", "entry_days", "is_reuse", "person.name",
                    "unit_registration.unit_number"]
    show_columns = list_columns
    search_columns = ["status", "tag", "edition"]
    order_columns = ["id", "status"]


class UnitRegistrationApi(ScopedModelRestApi):
    resource_name = "units"
    class_permission_name = "UnitRegistrationApi"
    datamodel = CurrentEditionInterface(m.UnitRegistration)
    list_title = show_title = _l("Units")
    include_route_methods = {"get", "get_list", "info"}
    list_columns = ["id", "status", "unit_number", "unit.name", "edition.number"]
    show_columns = list_columns
    search_columns = ["status", "edition"]
    order_columns = ["id", "status"]
