"""create_app: extensions, Flask-AppBuilder, views, APIs, CLI commands."""
from __future__ import annotations

import logging
import os
import sys
from importlib import import_module
from typing import Any

from flask import Flask
from flask_appbuilder import AppBuilder
from flask_babel import lazy_gettext as _l
from sqlalchemy import event
from sqlalchemy.engine import Engine

from config import BASE_DIR, get_config

log = logging.getLogger(__name__)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # SQLite enforces foreign keys only when asked, per connection.
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def _badge_signing_key(app: Flask) -> None:
    """Badge codes need a signing key: production refuses to start without one (but for
    `flask ciie badge-keys …`, which makes it); development makes one under instance/."""
    from app.badge_tokens import generate_key, load_keys

    folder = app.config["BADGE_SIGNING_KEYS_DIR"]
    if load_keys(folder).signing_key is not None:
        return
    if not app.config["BADGE_SIGNING_KEY_REQUIRED"]:
        generate_key(folder)
    elif "badge-keys" not in sys.argv[1:]:
        raise RuntimeError(f"production needs a badge signing key in {folder}: "
                           "flask ciie badge-keys generate")


def create_app(config_name: str | None = None, **overrides: Any) -> Flask:
    from app.extensions import csrf, db, mail, migrate, queue

    app = Flask(__name__, instance_path=os.path.join(BASE_DIR, "instance"))
    app.config.from_object(get_config(config_name))
    app.config.update(overrides)
    if app.config.get("SESSION_COOKIE_SECURE") and app.config["SECRET_KEY"].startswith("dev-"):
        raise RuntimeError("SECRET_KEY must be set in production")
    if app.config.get("PROVIDERS_REQUIRED"):
        from app.providers import production_refusals

        if refusals := production_refusals(app.config):
            raise RuntimeError("production needs these provider settings: "
                               + "; ".join(refusals))
    _badge_signing_key(app)
    from app.pii import KeySettingError, build_ring

    try:
        app.extensions["ciie_pii"] = build_ring(app.config)
    except KeySettingError as exc:
        raise RuntimeError(str(exc)) from None
    os.makedirs(app.config["UPLOAD_FOLDER"], exist_ok=True)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        os.makedirs(os.path.dirname(app.config["SQLALCHEMY_DATABASE_URI"][10:]) or ".",
                    exist_ok=True)

    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(BASE_DIR, "migrations"))
    csrf.init_app(app)
    mail.init_app(app)
    queue.init_app(app)

    with app.app_context():
        from app import models  # noqa: F401  (every table on FAB's metadata before FAB starts)

        appbuilder = AppBuilder()
        appbuilder.init_app(app, db.session)
        from flask_babel import get_babel

        from app.i18n import select_locale

        get_babel(app).locale_selector = select_locale
        from app.views import register_views

        register_views(appbuilder)
        if app.config["PAYMENT_SANDBOX"]:
            # A development package, loaded by name: production code never imports it.
            import_module("app.sandbox").register(app, appbuilder)
        from app import exports  # noqa: F401  (registers the export operations)
        from app.api import register_apis
        from app.workflow import operations  # noqa: F401  (registers the batch operations)

        register_apis(appbuilder)
        # FAB rate-limits only the web login; the API's token login gets the same treatment.
        security_api = next(v for v in appbuilder.baseviews
                            if isinstance(v, appbuilder.sm.security_api))
        appbuilder.sm.limiter.limit(app.config["API_LOGIN_RATE_LIMIT"], methods=["POST"])(
            security_api.blueprint)
        from app.web_security import init_web_security

        init_web_security(app, appbuilder)
        from app.replica import init_replica

        init_replica(app, appbuilder)
        app.config["APP_NAME"] = _l("CIIE Professional Visitors")

    from app.cli import register_cli
    from app.errors import register_error_handlers
    from app.templating import register_template_helpers

    register_cli(app)
    register_error_handlers(app)
    from app.input_checks import register_input_checks
    from app.labels import COLUMN_LABELS

    register_input_checks(app, COLUMN_LABELS)
    register_template_helpers(app)
    from app.fab_strings import name_blank_choices

    name_blank_choices()
    return app
