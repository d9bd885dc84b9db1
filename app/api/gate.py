"""The gate scanners' API: POST a badge's code, get the verdict (JWT login, role gate)."""
from __future__ import annotations

from flask_appbuilder.api import expose, protect, safe
from marshmallow import Schema, fields, validate
from werkzeug.wrappers import Response

from app import models as m
from app.api.app_persons import TEXT, AppApi, InputSchema
from app.scoping.actor import current_actor
from app.workflow import gate
from app.workflow.errors import WorkflowError


class ScanSchema(InputSchema):
    token = fields.String(required=True, validate=validate.Length(min=1, max=500),
                          metadata={"description": "The text of the badge's QR code."})
    gate = fields.String(load_default=None, allow_none=True,
                         validate=[TEXT, validate.Length(max=50)],
                         metadata={"description": "Which gate scanned (free text, logged)."})


class ScanBadgeSchema(Schema):
    number = fields.String(required=True)
    tag = fields.Enum(m.Tag, required=True)
    tag_label = fields.String(required=True)
    active = fields.Boolean(required=True)


class ScanPersonSchema(Schema):
    name = fields.String(required=True)
    unit = fields.String(required=True)
    delegation = fields.String(required=True, allow_none=True)
    photo = fields.String(required=True, allow_none=True,
                          metadata={"description": "The thumbnail as a data: URI, or null."})


class ScanResultSchema(Schema):
    result = fields.Enum(m.ScanResult, required=True)
    valid = fields.Boolean(required=True, metadata={"description": "Let the holder in."})
    label = fields.String(required=True)
    message = fields.String(required=True,
                            metadata={"description": "The verdict in the request's language."})
    today = fields.Date(required=True, metadata={"description": "Today in Beijing."})
    entry_today = fields.Boolean(required=True)
    entry_dates = fields.List(fields.Date(), required=True)
    scan_id = fields.Integer(required=True)
    badge = fields.Nested(ScanBadgeSchema, required=True, allow_none=True,
                          metadata={"description": "Null unless the code is genuine and "
                                    "current."})
    person = fields.Nested(ScanPersonSchema, required=True, allow_none=True)


class GateApi(AppApi):
    """Gate scanners post what they read; every scan is logged, whatever the result."""

    resource_name = "gate"
    openapi_spec_tag = "Gate"
    class_permission_name = "GateApi"
    openapi_spec_component_schemas = (ScanSchema, ScanResultSchema)

    @expose("/scan", methods=["POST"])
    @protect()
    @safe
    def scan(self) -> Response:
        """Check a badge's code at the gate.
        ---
        post:
          summary: Check a badge
          description: >-
            Answers whether the badge is genuine, active, of a person not cancelled, and
            whether today (Beijing time) is one of the holder's entry dates. A refused code is
            still a 200 answer with valid false and the reason; every scan is logged.
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  $ref: '#/components/schemas/ScanSchema'
          responses:
            200:
              description: The verdict
              content:
                application/json:
                  schema:
                    $ref: '#/components/schemas/ScanResultSchema'
            400:
              $ref: '#/components/responses/400'
            401:
              $ref: '#/components/responses/401'
            403:
              $ref: '#/components/responses/403'
            500:
              $ref: '#/components/responses/500'
        """
        try:
            values = self.load(ScanSchema())
            outcome = gate.scan(current_actor(), values["token"], values["gate"])
        except WorkflowError as exc:
            return self.refused(exc)
        return self.response(200, **outcome.as_json())
