"""REST API under /api/v1 for the mobile app / mini-program and integrations (JWT login)."""
from __future__ import annotations

from flask_appbuilder import AppBuilder


def register_apis(appbuilder: AppBuilder) -> None:
    from app.api.resources import PersonRegistrationApi, UnitRegistrationApi

    appbuilder.add_api(PersonRegistrationApi)
    appbuilder.add_api(UnitRegistrationApi)
