"""Read APIs over the same scoped data interface as the views."""
from __future__ import annotations

from flask_appbuilder.api import ModelRestApi
from flask_babel import lazy_gettext as _l

from app import models as m
from app.security import write_scope
from app.views.base import ScopedInterface
from app.views.labels import COLUMN_LABELS


class ScopedModelRestApi(ModelRestApi):
    """ModelRestApi on a ScopedInterface: lists, gets and related fields are scoped; changes
    use the write scope."""

    allow_browser_login = False
    version = "v1"

    def __init__(self) -> None:
        self.label_columns = {**COLUMN_LABELS, **(type(self).label_columns or {})}
        super().__init__()

    def put_headless(self, pk):
        with write_scope():
            return super().put_headless(pk)

    def delete_headless(self, pk):
        with write_scope():
            return super().delete_headless(pk)


class PersonRegistrationApi(ScopedModelRestApi):
    resource_name = "persons"
    class_permission_name = "PersonRegistrationApi"
    datamodel = ScopedInterface(m.PersonRegistration)
    list_title = show_title = _l("Persons")
    include_route_methods = {"get", "get_list", "info"}
    list_columns = ["id", "status", "tag", "entry_days", "is_reuse", "person.name",
                    "unit_registration.unit_number"]
    show_columns = list_columns
    search_columns = ["status", "tag"]
    order_columns = ["id", "status"]


class UnitRegistrationApi(ScopedModelRestApi):
    resource_name = "units"
    class_permission_name = "UnitRegistrationApi"
    datamodel = ScopedInterface(m.UnitRegistration)
    list_title = show_title = _l("Units")
    include_route_methods = {"get", "get_list", "info"}
    list_columns = ["id", "status", "unit_number", "unit.name", "edition.number"]
    show_columns = list_columns
    search_columns = ["status"]
    order_columns = ["id", "status"]
