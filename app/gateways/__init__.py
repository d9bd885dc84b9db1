"""Adapters to the outside world (SMS, e-mail, payment providers, the e-invoicing platform);
SMS, e-mail and e-invoices have local stand-ins here, the payment providers' simulator is the
development package app/sandbox/."""
from __future__ import annotations

from typing import Any

from flask import current_app


def secret_setting(name: str) -> str:
    """A setting that may be a secret: the file named by <NAME>_FILE (kept outside the
    repository) if set, else <NAME> itself."""
    config = current_app.config
    if config.get(f"{name}_FILE"):
        with open(config[f"{name}_FILE"], encoding="utf-8") as fh:
            return fh.read().strip()
    return str(config.get(name) or "")


def missing_secret(config: Any, name: str) -> list[str]:
    """What a production start lacks of the secret `name`: nothing when it or its file is set."""
    return [] if config.get(name) or config.get(f"{name}_FILE") else [f"{name} or {name}_FILE"]
