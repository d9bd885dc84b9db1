"""The API about the API: the OpenAPI document each caller may read, the menu, the token login.
They replace FAB's own, which let only admins read the document, answered English refusals
and described answers they do not give."""
from __future__ import annotations

import functools
from typing import Any, Iterator

from apispec import APISpec
from flask import current_app, request
from flask_appbuilder.api import BaseApi, expose, safe
from flask_appbuilder.api.manager import OpenApi
from flask_appbuilder.const import API_SECURITY_ACCESS_TOKEN_KEY, API_SECURITY_REFRESH_TOKEN_KEY
from flask_appbuilder.menu import MenuApi
from flask_appbuilder.security.api import SecurityApi
from flask_babel import lazy_gettext as _l
from flask_jwt_extended import create_access_token, create_refresh_token, verify_jwt_in_request
from flask_login import current_user
from marshmallow import Schema, ValidationError, fields, validate
from werkzeug.wrappers import Response

from app.api.common import RESPONSES, TEXT, TranslatedRefusals

PUBLIC = None   # the permission of an operation anyone may call (login, sign-up)


def operations(api: BaseApi) -> Iterator[tuple[str, Any, str | None]]:
    """Each exposed method of `api` the document describes: (name, method, permission)."""
    for name in dir(api):
        method = getattr(api, name)
        if not hasattr(method, "_urls"):
            continue
        if api.include_route_methods is not None and name not in api.include_route_methods:
            continue
        if name in api.exclude_route_methods:
            continue
        permission = api.get_method_permission(name)
        yield name, method, (f"can_{permission}" if permission else PUBLIC)


def may_call(api: BaseApi, permission: str | None) -> bool:
    if permission is PUBLIC:
        return True
    return (permission in api.base_permissions
            and current_app.appbuilder.sm.has_access(permission, api.class_permission_name))


def add_permitted(api: BaseApi, spec: APISpec) -> None:
    """FAB's BaseApi.add_api_spec, for the operations the caller may call only."""
    permitted = [method for _name, method, permission in operations(api)
                 if may_call(api, permission)]
    if not permitted:
        return
    api.add_apispec_components(spec)
    for method in permitted:
        for url, methods in method._urls:
            described: dict[str, Any] = {}
            path = api.path_helper(path=url, operations=described)
            api.operation_helper(path=path, operations=described, methods=methods, func=method)
            spec.path(path=path, operations=described)
            for verb in described:
                spec._paths[path][verb]["tags"] = [api.openapi_spec_tag
                                                   or type(api).__name__]


def complete_answers(document: dict) -> None:
    """Every operation says the refusals it can give: a protected one 401 and 403; one with
    a body or arguments 400 (and 422 where a rule beyond the document refuses)."""
    for path in document.get("paths", {}).values():
        for operation in path.values():
            answers = operation.setdefault("responses", {})
            if operation.get("security"):
                for code in ("401", "403"):
                    answers.setdefault(code, {"$ref": f"#/components/responses/{code}"})
            if operation.get("parameters") or operation.get("requestBody"):
                answers.setdefault("400", {"$ref": "#/components/responses/400"})
            if operation.get("requestBody"):
                answers.setdefault("422", {"$ref": "#/components/responses/422"})
            answers.setdefault("500", {"$ref": "#/components/responses/500"})


def logged_in(method: Any) -> Any:
    """A session or a token, whatever the roles; the token's refusals (401, in the
    caller's language) come from the JWT manager, so this stays outside `safe`."""
    @functools.wraps(method)
    def check(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            verify_jwt_in_request()
        return method(self, *args, **kwargs)

    return check


class PermittedOpenApi(TranslatedRefusals, OpenApi):
    """GET /api/<version>/_openapi for every logged-in user (token or session): the
    operations its roles may call, and the public ones (login, sign-up)."""

    @expose("/<version>/_openapi")
    @logged_in
    @safe
    def get(self, version: str) -> Response:
        """The OpenAPI document of one API version, for the caller.
        ---
        get:
          summary: This document
          description: >-
            Lists the operations the caller may call (its roles' permissions), and the
            public ones.
          parameters:
          - in: path
            schema:
              type: string
              enum: [v1]
            name: version
            required: true
          responses:
            200:
              description: The OpenAPI document
              content:
                application/json:
                  schema:
                    type: object
                    required: [openapi, paths]
                    properties:
                      openapi:
                        type: string
                      paths:
                        type: object
            401:
              $ref: '#/components/responses/401'
            404:
              $ref: '#/components/responses/404'
            500:
              $ref: '#/components/responses/500'
          security:
          - jwt: []
        """
        apis = [view for view in current_app.appbuilder.baseviews
                if isinstance(view, BaseApi) and view.version == version]
        if not apis:
            return self.response_404()
        spec = self._create_api_spec(version)
        for code, answer in RESPONSES.items():
            spec.components.response(code, answer)
        for api in apis:
            add_permitted(api, spec)
        document = spec.to_dict()
        complete_answers(document)
        return self.response(200, **document)


MENU_ENTRY = {
    "oneOf": [
        {"type": "object", "required": ["name", "label", "icon"],
         "properties": {
             "name": {"type": "string",
                      "description": "The entry's internal name (its permission)."},
             "label": {"type": "string", "description": "In the request's language."},
             "icon": {"type": "string"},
             "url": {"type": "string", "nullable": True,
                     "description": "The page (entries without children)."},
             "childs": {"type": "array", "items": {"$ref": "#/components/schemas/MenuEntry"},
                        "description": "The entries of a category."}}},
        {"type": "string", "enum": ["-"], "description": "A separator between entries."},
    ]}


class PermittedMenuApi(TranslatedRefusals, MenuApi):
    """FAB's menu API, described as it answers: entries, and "-" between groups of them."""

    class_permission_name = "MenuApi"

    def add_apispec_components(self, api_spec: APISpec) -> None:
        super().add_apispec_components(api_spec)
        api_spec.components.schema("MenuEntry", MENU_ENTRY)

    openapi_spec_methods = {"get_menu_data": {"get": {"responses": {
        "200": {"description": "The menu entries the caller may open",
                "content": {"application/json": {"schema": {
                    "type": "object", "required": ["result"],
                    "properties": {"result": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/MenuEntry"}}}}}}},
        "401": {"$ref": "#/components/responses/401"},
        "403": {"$ref": "#/components/responses/403"},
    }}}}


class LoginSchema(Schema):
    username = fields.String(required=True, validate=[TEXT, validate.Length(min=1, max=256)],
                             metadata={"description": "A unit's credit code, an app "
                                       "account's mobile (E.164) or e-mail, or a staff login."})
    password = fields.String(required=True, load_only=True,
                             validate=[TEXT, validate.Length(min=1, max=256)])
    provider = fields.String(required=True, validate=validate.OneOf(["db"]))
    refresh = fields.Boolean(load_default=False,
                             metadata={"description": "Also return a refresh token."})


class TokenSchema(Schema):
    access_token = fields.String(required=True)
    refresh_token = fields.String()


LOGIN_LABELS = {"username": _l("Login"), "password": _l("Password"),
                "provider": _l("Login provider"), "refresh": _l("Refresh token")}


class CiieSecurityApi(TranslatedRefusals, SecurityApi):
    """FAB's token login, refusing a malformed body with the field's name in the request's
    language (FAB answered English validator objects)."""

    openapi_spec_component_schemas = (LoginSchema, TokenSchema)
    openapi_spec_methods = {"refresh": {"post": {"responses": {
        "200": {"description": "A new access token", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/TokenSchema"}}}},
        "401": {"$ref": "#/components/responses/401"},
        "500": {"$ref": "#/components/responses/500"},
    }}}}

    @expose("/login", methods=["POST"])
    @safe
    def login(self) -> Response:
        """Log in and get a JWT.
        ---
        post:
          summary: Log in
          description: >-
            Answers an access token (and a refresh token if asked for). Send it as
            "Authorization: Bearer <token>". Limited to a few attempts a minute.
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  $ref: '#/components/schemas/LoginSchema'
          responses:
            200:
              description: Logged in
              content:
                application/json:
                  schema:
                    $ref: '#/components/schemas/TokenSchema'
            400:
              $ref: '#/components/responses/400'
            401:
              $ref: '#/components/responses/401'
            429:
              $ref: '#/components/responses/429'
            500:
              $ref: '#/components/responses/500'
        """
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return self.response_400(_l("The request body must be a JSON object."))
        try:
            values = LoginSchema().load(body)
        except ValidationError as exc:
            field = next(iter(exc.messages), "")
            return self.response_400(_l("Check \"%(field)s\": it is missing or not valid.",
                                        field=LOGIN_LABELS.get(field, field)))
        user = self.appbuilder.sm.auth_user_db(values["username"], values["password"])
        if not user:
            return self.response_401()
        tokens = {API_SECURITY_ACCESS_TOKEN_KEY: create_access_token(identity=str(user.id),
                                                                     fresh=True)}
        if values["refresh"]:
            tokens[API_SECURITY_REFRESH_TOKEN_KEY] = create_refresh_token(identity=str(user.id))
        return self.response(200, **tokens)
