"""What every API of the app shares: refusals as `{"message": …}` in the request's language,
and the document's answers (status → description) that go with them."""
from __future__ import annotations

from typing import Any

from flask_appbuilder.api import BaseApi
from flask_babel import LazyString
from flask_babel import gettext as _
from marshmallow import ValidationError, validate
from werkzeug.wrappers import Response

from app.errors import status_message
from app.extensions import db

# One printable character: no C0 or C1 control characters (PostgreSQL refuses NUL; the app's
# input checks refuse them all).
_CHAR = r"[^\x00-\x1f\x7f-\x9f]"


class Printable(validate.Regexp):
    """A pattern the document states, and no lone UTF-16 surrogate (a JSON escape can send one;
    it cannot be encoded). The surrogates stay out of the documented pattern: schemathesis, and
    other generators, cannot read a pattern naming them."""

    def __call__(self, value: Any) -> Any:
        value = super().__call__(value)
        if any("\ud800" <= char <= "\udfff" for char in value):
            raise ValidationError(self._format_error(value))
        return value


TEXT = Printable(rf"^{_CHAR}*$")
# The same, with at least one character that is not a space.
FILLED = Printable(rf"^{_CHAR}*[^\s\x00-\x1f\x7f-\x9f]{_CHAR}*$")

MESSAGE = {"application/json": {"schema": {
    "type": "object",
    "properties": {"message": {
        "type": "string",
        "description": "Why, in the request's language (Accept-Language; Chinese by default). "
                       "A refused field is named in it."}},
    "required": ["message"],
}}}

# The document's shared answers; they replace FAB's, which promise an English text (or object).
RESPONSES = {
    "400": {"description": "The request does not match this document (a field or a query "
                           "argument that is missing, of the wrong type or not offered). "
                           "Nothing was changed.", "content": MESSAGE},
    "401": {"description": "Not logged in, or the token expired or was revoked.",
            "content": MESSAGE},
    "403": {"description": "The caller's role may not call this operation.",
            "content": MESSAGE},
    "404": {"description": "Not found, or not in the caller's scope.", "content": MESSAGE},
    "409": {"description": "Conflicts with the current state (a record's status, a "
                           "deadline). Nothing was changed.", "content": MESSAGE},
    "422": {"description": "Matches this document, but a rule it cannot express refused it "
                           "(a check digit, an exhibition day, a password's strength, a "
                           "search value). Nothing was changed.", "content": MESSAGE},
    "429": {"description": "Too many attempts: wait a minute.", "content": MESSAGE},
    "500": {"description": "Something went wrong on our side. Nothing was changed.",
            "content": MESSAGE},
}


class TranslatedRefusals:
    """FAB answers refusals in English ("Forbidden", or a validator's object of messages);
    the app's APIs say why in the request's language. A message that is not text (FAB's
    validation objects) gives way to the status's standard refusal."""

    def refuse(self, code: int, message: Any = None) -> Response:
        db.session.rollback()
        if not isinstance(message, (str, LazyString)) or not str(message):
            message = status_message(code) or _("This request was refused. Nothing was "
                                                 "changed.")
        return BaseApi.response(code, message=str(message))

    def response_400(self, message: Any = None) -> Response:
        return self.refuse(400, message)

    def response_401(self) -> Response:
        return self.refuse(401)

    def response_403(self) -> Response:
        return self.refuse(403)

    def response_404(self) -> Response:
        return self.refuse(404)

    def response_422(self, message: Any = None) -> Response:
        return self.refuse(422, message)

    def response_500(self, message: Any = None) -> Response:
        return self.refuse(500)
