"""REST API under /api/v1 for the mobile app / mini-program and integrations (JWT login)."""
from __future__ import annotations

from flask import current_app
from flask_appbuilder import AppBuilder


def register_apis(appbuilder: AppBuilder) -> None:
    from app.api.app_persons import AppPersonApi, AppSignupApi
    from app.api.gate import GateApi
    from app.api.resources import PersonRegistrationApi, UnitRegistrationApi

    appbuilder.add_api(PersonRegistrationApi)
    appbuilder.add_api(UnitRegistrationApi)
    appbuilder.add_api(AppPersonApi)
    appbuilder.add_api(GateApi)
    signup = appbuilder.add_api(AppSignupApi)
    # Sign-up creates accounts without a login: limited like the token login.
    appbuilder.sm.limiter.limit(current_app.config["API_LOGIN_RATE_LIMIT"], methods=["POST"])(
        signup.blueprint)
