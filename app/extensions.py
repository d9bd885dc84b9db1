"""Extensions created once and bound to the app in create_app."""
from __future__ import annotations

from flask_appbuilder import AppBuilder
from flask_appbuilder.models.sqla.base import SQLA
from flask_mail import Mail
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFProtect

from app.queue import JobQueue

db = SQLA()
appbuilder = AppBuilder()
csrf = CSRFProtect()
migrate = Migrate()
mail = Mail()
queue = JobQueue()
