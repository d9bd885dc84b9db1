"""The mobile app / mini-program API: sign up, join a unit with its number, own record."""
from __future__ import annotations

from flask import request
from flask_appbuilder.api import BaseApi, expose, protect, safe
from flask_babel import lazy_gettext as _l
from marshmallow import Schema, ValidationError, fields, validate
from werkzeug.wrappers import Response

from app import models as m
from app.api.common import FILLED, RESPONSES, TEXT, TranslatedRefusals
from app.documents import photo_check
from app.i18n import pick
from app.scoping.actor import current_actor
from app.workflow import app_persons
from app.workflow.errors import WorkflowError
from app.workflow.persons import PersonData

FIELD_LABELS = {
    "username": _l("Login"),
    "password": _l("Password"),
    "first_name": _l("First name"),
    "last_name": _l("Last name"),
    "unit_number": _l("Unit number"),
    "name": _l("Name"),
    "gender": _l("Gender"),
    "id_type": _l("ID document"),
    "id_number": _l("ID number"),
    "nationality": _l("Nationality"),
    "mobile": _l("Mobile"),
    "email": _l("E-mail"),
    "job_title": _l("Job title"),
    "entry_dates": _l("Entry dates"),
}


class InputSchema(Schema):
    """A body of exactly the documented fields: the document says no others
    (additionalProperties: false), and an unknown one is refused naming it."""


class SignupSchema(InputSchema):
    username = fields.String(required=True, validate=[FILLED, validate.Length(max=128)],
                             metadata={"description": "A mobile number or an e-mail address. "
                                       "Mobile numbers are stored (and logged in with) in "
                                       "E.164 form, e.g. +8613812345678."})
    password = fields.String(required=True, load_only=True,
                             validate=[TEXT, validate.Length(max=128)],
                             metadata={"description": "At least 8 characters, letters and "
                                       "digits, not containing the login."})
    first_name = fields.String(required=True, validate=[FILLED, validate.Length(max=64)])
    last_name = fields.String(required=True, validate=[FILLED, validate.Length(max=64)])


class SignupResultSchema(Schema):
    id = fields.Integer(required=True)
    username = fields.String(required=True,
                             metadata={"description": "The login for /api/v1/security/login."})


class PersonDataSchema(InputSchema):
    name = fields.String(required=True, validate=[FILLED, validate.Length(max=100)])
    gender = fields.Enum(m.Gender, required=True)
    id_type = fields.Enum(m.IdType, required=True)
    id_number = fields.String(required=True, validate=[FILLED, validate.Length(max=64)])
    nationality = fields.String(load_default="CN", validate=validate.Regexp(r"^[A-Za-z]{2}$"),
                                metadata={"description": "ISO 3166 two-letter country code."})
    mobile = fields.String(load_default=None, allow_none=True,
                           validate=[TEXT, validate.Length(max=32)])
    email = fields.Email(load_default=None, allow_none=True, validate=validate.Length(max=254))
    job_title = fields.String(load_default=None, allow_none=True,
                              validate=[TEXT, validate.Length(max=100)])
    entry_dates = fields.List(fields.Date(), required=True,
                              validate=validate.Length(min=1, max=31),
                              metadata={"description": "Exhibition days of the current edition "
                                        "(ISO dates)."})
    # The app sends its one person form to join and to change: the unit number comes along.
    unit_number = fields.String(load_default=None, allow_none=True,
                                validate=[TEXT, validate.Length(max=16)],
                                metadata={"description": "Ignored here: an account joins one "
                                          "unit, with POST /api/v1/app/join."})


class JoinSchema(PersonDataSchema):
    unit_number = fields.String(required=True, validate=[FILLED, validate.Length(max=16)],
                                metadata={"description": "The unit number (T…) the unit "
                                          "received when it was approved."})


class AppPersonSchema(Schema):
    id = fields.Integer(required=True, metadata={"description": "The registration's id."})
    name = fields.String(required=True)
    gender = fields.Enum(m.Gender, required=True)
    id_type = fields.Enum(m.IdType, required=True)
    id_number = fields.String(required=True)
    nationality = fields.String(required=True)
    mobile = fields.String(required=True, allow_none=True)
    email = fields.String(required=True, allow_none=True)
    job_title = fields.String(required=True, allow_none=True)
    entry_dates = fields.List(fields.Date(), required=True)
    status = fields.Enum(m.PersonStatus, required=True)
    status_label = fields.String(required=True,
                                 metadata={"description": "The status in the request's "
                                           "language."})
    unit_name = fields.String(required=True)
    unit_number = fields.String(required=True, allow_none=True)
    edition = fields.Integer(required=True, metadata={"description": "The edition's number."})
    photo_warnings = fields.List(fields.String(), required=True, metadata={
        "description": "What the photo check found doubtful in the photo sent (in the "
                       "request's language); empty without a photo or when it passed. A photo "
                       "the check refuses is answered 422 with the reasons."})


class BodyRefused(WorkflowError):
    """A body that does not match the document (a missing field, a wrong type): a 400."""

    status_code = 400


class AppApi(TranslatedRefusals, BaseApi):
    """Shared by the app's resources: JSON bodies checked by a schema, and every refusal a
    `{"message": …}` in the request's language."""

    version = "v1"
    resource_name = "app"
    openapi_spec_tag = "App"
    allow_browser_login = False
    responses = RESPONSES

    def refused(self, exc: WorkflowError) -> Response:
        """A body of the documented form that a rule beyond the document refuses (a check
        digit, an exhibition day, a password's strength) is a 422; one not of that form a
        400."""
        if exc.status_code == 400 and not isinstance(exc, BodyRefused):
            return self.refuse(422, exc.message)
        return self.refuse(exc.status_code, exc.message)

    def load(self, schema: Schema) -> dict:
        """The JSON body checked by `schema`; raises BodyRefused naming the field."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise BodyRefused(_l("The request body must be a JSON object."))
        try:
            return schema.load(body)
        except ValidationError as exc:
            field = next(iter(exc.messages), "") if isinstance(exc.messages, dict) else ""
            raise BodyRefused(_l("Check \"%(field)s\": it is missing or not valid.",
                                 field=FIELD_LABELS.get(field, field))) from None


def person_data(values: dict) -> PersonData:
    return PersonData(
        name=values["name"], gender=values["gender"], id_type=values["id_type"],
        id_number=values["id_number"], nationality=values["nationality"],
        mobile=values["mobile"], email=values["email"], job_title=values["job_title"],
        entry_dates=values["entry_dates"],
    )


def person_json(registration: m.PersonRegistration) -> dict:
    person = registration.person
    unit_registration = registration.unit_registration
    return AppPersonSchema().dump({
        "id": registration.id, "name": person.name, "gender": person.gender,
        "id_type": person.id_type, "id_number": person.id_number,
        "nationality": person.nationality, "mobile": person.mobile, "email": person.email,
        "job_title": person.job_title, "entry_dates": registration.entry_dates,
        "status": registration.status, "status_label": str(registration.status.label),
        "unit_name": pick(unit_registration.unit.name, unit_registration.unit.name_en),
        "unit_number": unit_registration.unit_number,
        "edition": registration.edition.number,
        "photo_warnings": [str(w) for w in photo_check.stored_warnings(person.photo_check)],
    })


class AppSignupApi(AppApi):
    """Public sign-up; its blueprint is rate-limited like the token login."""

    class_permission_name = "AppSignupApi"
    openapi_spec_component_schemas = (SignupSchema, SignupResultSchema)

    @expose("/signup", methods=["POST"])
    @safe
    def signup(self) -> Response:
        """Create an app account (role person).
        ---
        post:
          summary: Sign up for the CIIE app
          description: >-
            Creates an account with the role person. Log in with
            /api/v1/security/login (provider db) to get a token.
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  $ref: '#/components/schemas/SignupSchema'
          responses:
            201:
              description: The account was created
              content:
                application/json:
                  schema:
                    $ref: '#/components/schemas/SignupResultSchema'
            400:
              $ref: '#/components/responses/400'
            409:
              $ref: '#/components/responses/409'
            429:
              $ref: '#/components/responses/429'
            500:
              $ref: '#/components/responses/500'
        """
        try:
            values = self.load(SignupSchema())
            user = app_persons.sign_up(values["username"], values["password"],
                                       values["first_name"], values["last_name"])
        except WorkflowError as exc:
            return self.refused(exc)
        return self.response(201, **SignupResultSchema().dump(
            {"id": user.id, "username": user.username}))


class AppPersonApi(AppApi):
    """The signed-up person: join a unit, read and change its own record."""

    class_permission_name = "AppPersonApi"
    openapi_spec_component_schemas = (JoinSchema, PersonDataSchema, AppPersonSchema)

    @expose("/join", methods=["POST"])
    @protect()
    @safe
    def join(self) -> Response:
        """Join a unit with its unit number.
        ---
        post:
          summary: Join a unit
          description: >-
            The unit must be approved for the current edition. The person then waits for
            the unit to accept it (status awaiting_unit). An account joins one unit.
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  $ref: '#/components/schemas/JoinSchema'
          responses:
            201:
              description: Joined; the unit has to accept the person
              content:
                application/json:
                  schema:
                    $ref: '#/components/schemas/AppPersonSchema'
            400:
              $ref: '#/components/responses/400'
            401:
              $ref: '#/components/responses/401'
            403:
              $ref: '#/components/responses/403'
            404:
              $ref: '#/components/responses/404'
            409:
              $ref: '#/components/responses/409'
            500:
              $ref: '#/components/responses/500'
        """
        try:
            values = self.load(JoinSchema())
            registration = app_persons.join_unit(current_actor(), values["unit_number"],
                                                 person_data(values))
        except WorkflowError as exc:
            return self.refused(exc)
        return self.response(201, **person_json(registration))

    @expose("/me", methods=["GET"])
    @protect()
    @safe
    def get_me(self) -> Response:
        """The caller's own person record.
        ---
        get:
          summary: My record
          responses:
            200:
              description: The person, its status and its unit
              content:
                application/json:
                  schema:
                    $ref: '#/components/schemas/AppPersonSchema'
            401:
              $ref: '#/components/responses/401'
            403:
              $ref: '#/components/responses/403'
            404:
              $ref: '#/components/responses/404'
            500:
              $ref: '#/components/responses/500'
        """
        try:
            registration = app_persons.own_registration(current_actor())
        except WorkflowError as exc:
            return self.refused(exc)
        return self.response(200, **person_json(registration))

    @expose("/me", methods=["PUT"])
    @protect()
    @safe
    def put_me(self) -> Response:
        """Change the caller's personal data while its unit has not decided.
        ---
        put:
          summary: Change my data
          description: >-
            Possible only while the status is awaiting_unit; afterwards the unit changes it.
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  $ref: '#/components/schemas/PersonDataSchema'
          responses:
            200:
              description: Changed
              content:
                application/json:
                  schema:
                    $ref: '#/components/schemas/AppPersonSchema'
            400:
              $ref: '#/components/responses/400'
            401:
              $ref: '#/components/responses/401'
            403:
              $ref: '#/components/responses/403'
            404:
              $ref: '#/components/responses/404'
            409:
              $ref: '#/components/responses/409'
            500:
              $ref: '#/components/responses/500'
        """
        try:
            values = self.load(PersonDataSchema())
            registration = app_persons.update_own(current_actor(), person_data(values))
        except WorkflowError as exc:
            return self.refused(exc)
        return self.response(200, **person_json(registration))

    @expose("/me/photo", methods=["PUT"])
    @protect()
    @safe
    def put_photo(self) -> Response:
        """Send my ID photo while my unit has not decided.
        ---
        put:
          summary: Send my photo
          description: >-
            JPEG or PNG, at least 100 × 120 pixels, showing the person alone, face from
            the front, large enough, in good light (checked on upload: a refusal is a 422
            naming each reason; a background not plain and light is a warning in
            photo_warnings). Possible only while the status is awaiting_unit; the unit can
            accept the person only with a photo.
          requestBody:
            required: true
            content:
              multipart/form-data:
                schema:
                  type: object
                  additionalProperties: false
                  properties:
                    photo:
                      type: string
                      format: binary
                  required: [photo]
          responses:
            200:
              description: Stored
              content:
                application/json:
                  schema:
                    $ref: '#/components/schemas/AppPersonSchema'
            400:
              $ref: '#/components/responses/400'
            401:
              $ref: '#/components/responses/401'
            403:
              $ref: '#/components/responses/403'
            404:
              $ref: '#/components/responses/404'
            409:
              $ref: '#/components/responses/409'
            500:
              $ref: '#/components/responses/500'
        """
        unknown = (set(request.form) | set(request.files)) - {"photo"}
        if unknown:
            return self.refuse(400, _l("Check \"%(field)s\": it is missing or not valid.",
                                       field=sorted(unknown)[0]))
        try:
            registration = app_persons.set_own_photo(current_actor(), request.files.get("photo"))
        except WorkflowError as exc:
            return self.refused(exc)
        return self.response(200, **person_json(registration))
