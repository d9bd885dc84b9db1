"""Read APIs over the same scoped data interface as the views."""
from __future__ import annotations

from typing import Any

import jsonschema
import prison
from flask import current_app, request, send_from_directory, url_for
from flask_appbuilder.api import ModelRestApi, expose, protect, safe
from flask_appbuilder.api.convert import Model2SchemaConverter
from flask_appbuilder.api.schemas import get_item_schema, get_list_schema
from flask_appbuilder.const import (
    API_FILTERS_RIS_KEY,
    API_ORDER_COLUMN_RIS_KEY,
    API_ORDER_DIRECTION_RIS_KEY,
    API_PAGE_INDEX_RIS_KEY,
    API_PAGE_SIZE_RIS_KEY,
    API_PERMISSIONS_RIS_KEY,
    API_SELECT_KEYS_RIS_KEY,
    API_URI_RIS_KEY,
)
from flask_appbuilder.exceptions import (
    InvalidColumnFilterFABException,
    InvalidOperationFilterFABException,
)
from flask_appbuilder.models.filters import Filters
from flask_appbuilder.security.decorators import permission_name
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from marshmallow import fields
from marshmallow.fields import Field
from werkzeug.wrappers import Response

from app import models as m
from app.api.common import RESPONSES, TranslatedRefusals
from app.labels import COLUMN_LABELS
from app.scoping.actor import write_scope
from app.scoping.interface import ScopedInterface
from app.scoping.rules import get_scoped
from app.workflow.editions import current_edition
from app.workflow.errors import InputRefused
from app.workflow.invoices import invoice_file

# FAB hands any page number to OFFSET, where a negative (or huge) one is a database error:
# pages count from 0 and stay within what OFFSET can take (ids too: an integer column).
MAX_PAGE = 2 ** 31 - 1


class EntryDates(fields.List):
    """A person's entry dates as ISO dates: the column holds a bit mask over the edition's
    days (bit 0 = first day), which no client should have to decode."""

    def __init__(self) -> None:
        super().__init__(fields.Date(), dump_only=True, required=True,
                         metadata={"description": "Exhibition days the person may enter "
                                   "(ISO dates)."})


class DownloadLink(fields.String):
    """The scoped API download of an invoice's PDF, or null while it has none; the storage
    key itself is never shown."""

    def __init__(self) -> None:
        super().__init__(dump_only=True, required=True, allow_none=True,
                         metadata={"description": "GET it with the same token: the PDF."})

    def serialize(self, attr: str, obj: Any, accessor: Any = None, **kwargs: Any) -> Any:
        if invoice_file(obj, "pdf") is None:
            return None
        return url_for("InvoiceApi.pdf", pk=obj.id)


# Fields an API shows that are no plain column: what the converter makes of them.
COMPUTED_FIELDS = {(m.PersonRegistration, "entry_dates"): EntryDates,
                   (m.Invoice, "download_url"): DownloadLink}


class CiieModel2SchemaConverter(Model2SchemaConverter):
    def _meta_schema_factory(self, columns: list[str], model: Any, class_mixin: Any,
                             parent_schema_name: str | None = None) -> Any:
        schema = super()._meta_schema_factory(columns, model, class_mixin, parent_schema_name)
        if not columns:
            return schema

        # A nested row names its links by id (an order item's person registration):
        # marshmallow-sqlalchemy leaves foreign keys out unless asked.
        class MetaSchema(schema):  # type: ignore[misc, valid-type]
            class Meta(schema.Meta):  # type: ignore[name-defined]
                include_fk = True

        return MetaSchema

    def _column2enum(self, datamodel: Any, column: Any) -> Field:
        field = super()._column2enum(datamodel, column)
        # FAB forgets that a nullable enum column holds null (a person's tag before the lock):
        # the OpenAPI document then refused the null the API answers.
        field.allow_none = datamodel.is_nullable(column.name)
        return field

    def _column2field(self, datamodel: Any, column: Any, nested: bool = True,
                      parent_schema_name: str | None = None) -> Field:
        computed = COMPUTED_FIELDS.get((datamodel.obj, column.name))
        if computed is not None:
            return computed()
        # Search-only expressions (column_property over another table) are never sent or set
        # through the API; FAB's converter would read Column attributes a Label lacks.
        if datamodel._is_expression(column.name):
            return fields.Raw(dump_only=True)
        return super()._column2field(datamodel, column, nested, parent_schema_name)


RISON = "application/x-rison"
# The rison argument each read operation takes, by FAB's name of its method.
QUERY_SCHEMAS = {"get_list": "get_list_schema", "get": "get_item_schema",
                 "info": "get_info_schema"}


def _value_schema(datamodel: Any, column: str) -> dict[str, Any]:
    """What a search filter on `column` takes as its value."""
    if datamodel.is_relation(column):
        return {"type": "integer", "minimum": 1, "maximum": MAX_PAGE,
                "description": "The related record's id."}
    if datamodel.is_enum(column):
        enum_class = datamodel.list_columns[column].type.enum_class
        return {"type": "string", "enum": [member.value for member in enum_class]}
    if datamodel.is_boolean(column):
        return {"type": "boolean"}
    if datamodel.is_integer(column):
        return {"type": "integer", "minimum": -MAX_PAGE, "maximum": MAX_PAGE}
    if datamodel.is_date(column):
        return {"type": "string", "format": "date"}
    return {"type": "string", "maxLength": 200}


class ScopedModelRestApi(TranslatedRefusals, ModelRestApi):
    """ModelRestApi on a ScopedInterface: lists, gets and related fields are scoped; changes
    use the write scope. Refusals are in the request's language; the rison argument `q` is
    documented, and checked, as what this API takes (its columns, filters and operators)."""

    allow_browser_login = False
    version = "v1"
    model2schemaconverter = CiieModel2SchemaConverter
    responses = RESPONSES

    def __init__(self) -> None:
        self.label_columns = {**COLUMN_LABELS, **(type(self).label_columns or {})}
        super().__init__()

    def query_schemas(self) -> dict[str, dict[str, Any]]:
        """The schema of `q` of each read operation, by FAB's method name."""
        page_size = {"type": "integer", "minimum": 1,
                     "maximum": current_app.config["FAB_API_MAX_PAGE_SIZE"]}
        page = {"type": "integer", "minimum": 0, "maximum": MAX_PAGE}
        offered = self._filters.get_search_filters()
        filters = [{
            "type": "object", "additionalProperties": False,
            "required": ["col", "opr", "value"],
            "properties": {"col": {"type": "string", "enum": [column]},
                           "opr": {"type": "string",
                                   "enum": [f.arg_name for f in offered[column]]},
                           "value": _value_schema(self.datamodel, column)},
        } for column in self.search_columns if column in offered]
        listing = {
            "type": "object", "additionalProperties": False,
            "properties": {
                API_SELECT_KEYS_RIS_KEY: get_list_schema["properties"][
                    API_SELECT_KEYS_RIS_KEY],
                API_ORDER_COLUMN_RIS_KEY: {"type": "string",
                                           "enum": list(self.order_columns)},
                API_ORDER_DIRECTION_RIS_KEY: {"type": "string", "enum": ["asc", "desc"]},
                API_PAGE_INDEX_RIS_KEY: page,
                API_PAGE_SIZE_RIS_KEY: page_size,
                API_FILTERS_RIS_KEY: {"type": "array", "maxItems": 10,
                                      "items": {"oneOf": filters} if filters else {
                                          "not": {}}},
            }}
        item = {"type": "object", "additionalProperties": False, "properties": {
            API_SELECT_KEYS_RIS_KEY: get_item_schema["properties"][API_SELECT_KEYS_RIS_KEY],
        }}
        info = {"type": "object", "additionalProperties": False, "properties": {
            API_SELECT_KEYS_RIS_KEY: {"type": "array", "items": {
                "type": "string", "enum": [API_FILTERS_RIS_KEY, API_PERMISSIONS_RIS_KEY,
                                           "none"]}},
        }}
        return {"get_list": listing, "get": item, "info": info}

    def _query_schema_name(self, method: str) -> str:
        return f"{type(self).__name__}.q.{method}"

    def add_apispec_components(self, api_spec: Any) -> None:
        super().add_apispec_components(api_spec)
        for method, schema in self.query_schemas().items():
            api_spec.components.schema(self._query_schema_name(method), schema)

    def create_blueprint(self, appbuilder: Any, *args: Any, **kwargs: Any) -> Any:
        blueprint = super().create_blueprint(appbuilder, *args, **kwargs)
        blueprint.before_request(self._check_query)
        return blueprint

    def _check_query(self) -> Response | None:
        """`q` as this API documents it, or a 400 naming the argument: FAB checks it only
        against a schema shared by every API, then answers English, or ignores what it does
        not know."""
        method = (request.endpoint or "").rsplit(".", 1)[-1]
        value = request.args.get(API_URI_RIS_KEY)
        if method not in QUERY_SCHEMAS or value is None:
            return None
        try:
            query = prison.loads(value)
        except Exception:  # any failure to parse is the client's malformed query
            return self.response_400(_("Check the query (q): it is not rison."))
        if isinstance(query, dict) and isinstance(query.get(API_FILTERS_RIS_KEY), list):
            # The filters' own refusals name the column and the operators it offers.
            try:
                for wanted in query[API_FILTERS_RIS_KEY]:
                    self._offered_filter(wanted)
            except (InvalidColumnFilterFABException, InvalidOperationFilterFABException) as exc:
                return self.response_400(str(exc))
        schema = self.query_schemas()[method]
        error = jsonschema.exceptions.best_match(
            jsonschema.Draft7Validator(schema).iter_errors(query))
        if error is None:
            return None
        where = [str(part) for part in error.absolute_path if not isinstance(part, int)]
        if where[:1] == [API_FILTERS_RIS_KEY] and len(error.absolute_path) > 1:
            # A filter its column offers, with a value the column does not take.
            wanted = query[API_FILTERS_RIS_KEY][error.absolute_path[1]]
            column = str(wanted["col"])
            return self.response_400(_("Check \"%(field)s\": \"%(value)s\" is not one of "
                                       "its values.", field=self.label_columns.get(column, column),
                                       value=str(wanted["value"])[:40]))
        return self.response_400(_("Check the query (q): \"%(argument)s\" is not one this "
                                   "list takes, or not in its form.",
                                   argument=".".join(where) or API_URI_RIS_KEY))

    def operation_helper(self, path: Any = None, operations: Any = None, methods: Any = None,
                         func: Any = None, **kwargs: Any) -> None:
        super().operation_helper(path=path, operations=operations, methods=methods, func=func,
                                 **kwargs)
        name = getattr(func, "__name__", "")
        for operation in operations.values():
            # FAB documents `q` as JSON: it is rison, in the form this API takes.
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == API_URI_RIS_KEY and name in QUERY_SCHEMAS:
                    parameter.pop("schema", None)
                    parameter["description"] = (
                        "Rison (https://github.com/Nanonid/rison), e.g. "
                        "(page:0,page_size:25,order_column:id,order_direction:desc).")
                    parameter["content"] = {RISON: {"schema": {
                        "$ref": f"#/components/schemas/{self._query_schema_name(name)}"}}}
            if name in QUERY_SCHEMAS:
                operation.setdefault("responses", {})["422"] = {
                    "$ref": "#/components/responses/422"}
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
        try:
            return super().get_list_headless(**kwargs)
        except InputRefused as exc:   # a search value its column cannot hold
            return self.response_422(message=str(exc.message))

    def _handle_filters_args(self, rison_args: dict[str, Any]) -> Any:
        """Each filter with an operator its column offers, or the request is a 400 naming the
        field: FAB silently drops an unknown operator (the answer then lists everything) and
        looks a known one up in a registry shared by every view, not the column's own."""
        self._filters.clear_filters()
        for wanted in rison_args.get(API_FILTERS_RIS_KEY, []):
            found = self._offered_filter(wanted)
            self._filters.add_filter(str(wanted["col"]), type(found), wanted["value"])
        return self._filters.get_joined_filters(self._base_filters)

    def _offered_filter(self, wanted: Any) -> Any:
        """The filter `wanted` names, if its column offers it; else refused naming the field."""
        offered = self._filters.get_search_filters()
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
        return found[0]

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
    list_columns = ["id", "status", "tag", "entry_dates", "is_reuse", "person.name",
                    "unit_registration.unit_number"]
    show_columns = list_columns
    # What entry_dates is made of; the edition is one row the session keeps, not one a row.
    list_select_columns = show_select_columns = [
        "id", "status", "tag", "entry_days", "edition_id", "is_reuse", "person.name",
        "unit_registration.unit_number"]
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


READ_ONLY = {"get", "get_list", "info"}


class OrderApi(ScopedModelRestApi):
    """Badge-fee orders with their persons: a unit's own, all for finance (amounts in fen)."""

    resource_name = "orders"
    class_permission_name = "OrderApi"
    datamodel = ScopedInterface(m.Order)
    list_title = show_title = _l("Orders")
    include_route_methods = READ_ONLY
    list_columns = ["id", "number", "status", "fee_fen", "amount_fen", "paid_at",
                    "cancelled_at", "created_at", "edition.number", "unit.name",
                    "items.id", "items.person_registration_id", "items.amount_fen",
                    "items.active"]
    show_columns = list_columns
    description_columns = {
        "fee_fen": _l("The fee per person, in fen (1/100 yuan)."),
        "amount_fen": _l("The order's amount, in fen (1/100 yuan)."),
        "items": _l("The persons of the order: an item is inactive once the order was "
                    "cancelled."),
    }
    label_columns = {"items.id": _l("Order item"), "items.person_registration_id": _l("Person"),
                     "items.amount_fen": _l("Amount"), "items.active": _l("Item active")}
    search_columns = ["status", "edition"]
    order_columns = ["id", "status", "created_at"]
    base_order = ("id", "desc")


class InvoiceApi(ScopedModelRestApi):
    """Invoices and red-letter reversals: a unit's own, all for finance; the PDF through
    the same scope."""

    resource_name = "invoices"
    class_permission_name = "InvoiceApi"
    datamodel = ScopedInterface(m.Invoice)
    list_title = show_title = _l("Invoices")
    include_route_methods = READ_ONLY | {"pdf"}
    list_columns = ["id", "number", "kind", "status", "amount_fen", "order_id",
                    "reversal_of_id", "buyer_name", "buyer_tax_id", "issued_at", "carrier",
                    "tracking_no", "reject_reason", "created_at", "download_url"]
    show_columns = list_columns
    list_select_columns = show_select_columns = [
        column for column in list_columns if column != "download_url"] + [
        "pdf_key", "einvoice_platform"]
    label_columns = {"download_url": _l("E-invoice"), "order_id": _l("Order"),
                     "reversal_of_id": _l("Reversal of invoice")}
    description_columns = {
        "amount_fen": _l("The amount as printed, in fen (1/100 yuan); a red-letter reversal "
                         "(reversal_of_id set) counts negative."),
    }
    search_columns = ["status", "kind"]
    order_columns = ["id", "status", "issued_at"]
    base_order = ("id", "desc")

    @expose("/<int:pk>/pdf", methods=["GET"])
    @protect()
    @safe
    @permission_name("download")
    def pdf(self, pk: int) -> Response:
        """The invoice's PDF, if it is in the caller's scope.
        ---
        get:
          summary: Download the invoice's PDF
          parameters:
          - in: path
            name: pk
            required: true
            schema:
              type: integer
              minimum: 0
          responses:
            200:
              description: The PDF
              content:
                application/pdf:
                  schema:
                    type: string
                    format: binary
            401:
              $ref: '#/components/responses/401'
            403:
              $ref: '#/components/responses/403'
            404:
              $ref: '#/components/responses/404'
            500:
              $ref: '#/components/responses/500'
        """
        invoice = get_scoped(m.Invoice, pk)
        if invoice is None or invoice_file(invoice, "pdf") is None:
            return self.response_404()
        return send_from_directory(current_app.config["UPLOAD_FOLDER"], invoice.pdf_key,
                                   as_attachment=True, mimetype="application/pdf",
                                   download_name=f"invoice-{invoice.number}.pdf")


class RefundApi(ScopedModelRestApi):
    """Refunds: a unit's own, all for finance (amounts in fen)."""

    resource_name = "refunds"
    class_permission_name = "RefundApi"
    datamodel = ScopedInterface(m.Refund)
    list_title = show_title = _l("Refunds")
    include_route_methods = READ_ONLY
    list_columns = ["id", "number", "status", "amount_fen", "route", "reason", "created_at",
                    "done_at", "payment.order_id", "items.order_item_id", "items.amount_fen",
                    "items.active"]
    show_columns = list_columns
    label_columns = {"done_at": _l("Done at"), "payment.order_id": _l("Order"),
                     "items.order_item_id": _l("Order item"), "items.amount_fen": _l("Amount"),
                     "items.active": _l("Item active")}
    description_columns = {
        "amount_fen": _l("The amount refunded, in fen (1/100 yuan)."),
    }
    search_columns = ["status"]
    order_columns = ["id", "status", "created_at"]
    base_order = ("id", "desc")
