"""Extensions created once and bound to the app in create_app (Flask-AppBuilder is not one of
them: create_app makes one per app, since it keeps its views and security manager on itself)."""
from __future__ import annotations

from flask_appbuilder.models.sqla.base import SQLA
from flask_mail import Mail
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFProtect

from app.queue import JobQueue

db = SQLA()
csrf = CSRFProtect()
migrate = Migrate()
mail = Mail()
queue = JobQueue()
