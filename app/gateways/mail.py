"""E-mail over a real SMTP connection (Flask-Mail); with no server configured, to the log."""
from __future__ import annotations

import logging

from flask import current_app
from flask_mail import Message

log = logging.getLogger(__name__)


def send_email(recipient: str, subject: str, body: str) -> None:
    backend = current_app.config.get("MAIL_BACKEND", "log")
    if backend == "log":
        log.info("E-mail to %s: %s\n%s", recipient, subject, body)
        return
    from app.extensions import mail

    mail.send(Message(subject=subject, recipients=[recipient], body=body, charset="utf-8"))
