"""SMS adapter. The provider we cannot reach here sits behind this interface; the default
sandbox writes each message to the log and to an outbox file (one JSON line per message)."""
from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone

from flask import current_app

log = logging.getLogger(__name__)


class SmsError(Exception):
    pass


class LogSmsGateway:
    """Sandbox: 'sends' by logging and appending to the SMS_OUTBOX file."""

    def send(self, mobile: str, text: str) -> str:
        if not mobile:
            raise SmsError("no mobile number")
        log.info("SMS to %s: %s", mobile, text)
        path = current_app.config["SMS_OUTBOX"]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"to": mobile, "text": text,
                                 "at": datetime.now(timezone.utc).isoformat()},
                                ensure_ascii=False) + "\n")
        return "sandbox"


def sms_gateway() -> LogSmsGateway:
    backend = current_app.config.get("SMS_BACKEND", "log")
    if backend == "log":
        return LogSmsGateway()
    raise RuntimeError(f"unknown SMS_BACKEND {backend!r}")
