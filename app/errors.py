"""Error pages and JSON errors in the user's language; a refused workflow move is a 4xx."""
from __future__ import annotations

import io
from typing import Any

import prison
from flask import Flask, current_app, flash, g, jsonify, render_template, request
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from app.extensions import db
from app.input_checks import form_page
from app.queue import QueueUnavailable
from app.workflow.errors import WorkflowError


def _messages() -> dict[int, str]:
    return {
        400: _("The request was not valid. Nothing was changed."),
        401: _("Please log in."),
        403: _("You are not allowed to do this. Nothing was changed."),
        404: _("Not found, or not yours to see."),
        405: _("This action is not allowed here."),
        409: _("This conflicts with the current state. Nothing was changed."),
        413: _("The upload is too large."),
        429: _("Too many attempts. Please wait a minute and try again."),
        500: _("Something went wrong on our side. Nothing was changed."),
        503: _("The service is not ready yet."),
    }


def status_message(status: int) -> str:
    """The standard refusal for an HTTP status, in the request's language."""
    return _messages().get(status, "")


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.is_json or (
        request.accept_mimetypes.best == "application/json")


def error_response(status: int, message: str):
    if wants_json():
        return jsonify({"message": message}), status
    from flask import current_app

    appbuilder = current_app.appbuilder
    if "user" not in g:
        # CSRF and rate-limit errors come before FAB's before_request sets the user.
        g.user = current_user
    return render_template("ciie/error.html", status=status, message=message,
                           appbuilder=appbuilder, base_template=appbuilder.base_template), status


def _check_rison_query() -> Any:
    """FAB parses the API's `q` argument with prison, which lets some malformed numbers
    escape as ValueError (a 500): refuse any unreadable `q` as the bad request it is."""
    if request.path.startswith("/api/") and "q" in request.args:
        try:
            prison.loads(request.args["q"])
        except Exception:  # any failure to parse is the client's malformed query
            return jsonify({"message": _messages()[400]}), 400
    return None


def upload_too_large(_exc: RequestEntityTooLarge) -> Any:
    """An upload over MAX_CONTENT_LENGTH: the page of the form it came from, saying the limit
    (app.input_checks finds it)."""
    message = _("The upload is too large: a form can send at most %(mb)d MB. Nothing was "
                "saved.", mb=current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024))
    if wants_json():
        return jsonify({"message": message}), 413
    page = form_page()
    if page is None:
        return error_response(413, message)
    # The body was never read: show the form's page again (a GET of it), with the limit.
    path, query = page
    environ = {**request.environ, "REQUEST_METHOD": "GET", "CONTENT_LENGTH": "0",
               "CONTENT_TYPE": "", "wsgi.input": io.BytesIO(), "PATH_INFO": path,
               "QUERY_STRING": query}
    with current_app.request_context(environ):
        flash(message, "danger")
        response = current_app.full_dispatch_request()
    response.status_code = 413
    return response


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(RequestEntityTooLarge, upload_too_large)
    app.before_request(_check_rison_query)

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        db.session.rollback()
        return error_response(400, _("The form expired or did not come from this site "
                                     "(missing or wrong security token). Reload the page "
                                     "and try again; nothing was changed."))

    @app.errorhandler(WorkflowError)
    def workflow_error(exc):
        db.session.rollback()
        return error_response(exc.status_code, str(exc.message))

    # Redis (one-time codes, or a job that cannot wait in the outbox) did not answer before
    # anything was committed: the request can simply be made again.
    @app.errorhandler(QueueUnavailable)
    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    def redis_unavailable(exc):
        app.logger.warning("Redis does not answer: %s", exc)
        db.session.rollback()
        return error_response(503, _("A service the system needs is not answering. Nothing "
                                     "was changed: please try again in a few minutes."))

    @app.errorhandler(HTTPException)
    def http_error(exc):
        if exc.code is None or exc.code < 400:
            return exc
        db.session.rollback()
        return error_response(exc.code, _messages().get(exc.code, exc.description or ""))

    @app.errorhandler(Exception)
    def unexpected(exc):
        app.logger.exception("unhandled error")
        db.session.rollback()
        return error_response(500, _messages()[500])
