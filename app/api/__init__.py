"""REST API under /api/v1 for the mobile app / mini-program and integrations (JWT login)."""
from __future__ import annotations

from flask import current_app
from flask_appbuilder import AppBuilder


def register_apis(appbuilder: AppBuilder) -> None:
    from flask_appbuilder.api.manager import SwaggerView

    from app.api.app_persons import AppPersonApi, AppSignupApi
    from app.api.gate import GateApi
    from app.api.meta import PermittedMenuApi, PermittedOpenApi
    from app.api.resources import (
        InvoiceApi,
        OrderApi,
        PersonRegistrationApi,
        RefundApi,
        UnitRegistrationApi,
    )

    appbuilder.add_api(PermittedOpenApi)
    appbuilder.add_api(PermittedMenuApi)
    if current_app.config["FAB_API_SWAGGER_UI"]:
        appbuilder.add_view_no_menu(SwaggerView)
    appbuilder.add_api(PersonRegistrationApi)
    appbuilder.add_api(UnitRegistrationApi)
    appbuilder.add_api(OrderApi)
    appbuilder.add_api(InvoiceApi)
    appbuilder.add_api(RefundApi)
    appbuilder.add_api(AppPersonApi)
    appbuilder.add_api(GateApi)
    signup = appbuilder.add_api(AppSignupApi)
    # Sign-up creates accounts without a login: limited like the token login.
    appbuilder.sm.limiter.limit(current_app.config["API_LOGIN_RATE_LIMIT"], methods=["POST"])(
        signup.blueprint)
