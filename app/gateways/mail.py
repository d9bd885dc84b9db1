"""E-mail over a real SMTP connection (Flask-Mail); with no server configured, to the log."""
from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone

from flask import current_app
from flask_mail import Message

log = logging.getLogger(__name__)


def send_email(recipient: str, subject: str, body: str) -> None:
    backend = current_app.config.get("MAIL_BACKEND", "log")
    if backend == "log":
        # No SMTP server (the embedded default): keep the message where a developer finds it.
        log.info("E-mail to %s: %s\n%s", recipient, subject, body)
        path = current_app.config["MAIL_OUTBOX"]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"to": recipient, "subject": subject, "body": body,
                                 "at": datetime.now(timezone.utc).isoformat()},
                                ensure_ascii=False) + "\n")
        return
    from app.extensions import mail

    mail.send(Message(subject=subject, recipients=[recipient], body=body, charset="utf-8"))
