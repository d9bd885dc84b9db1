"""The current edition and its deadlines (Asia/Shanghai), with per-delegation extensions."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask import g, has_app_context
from flask_babel import lazy_gettext as _l

from app import models as m
from app.clock import SHANGHAI, now
from app.extensions import db
from app.workflow.errors import WorkflowError


def current_edition() -> m.Edition:
    """The edition marked current (cached for the request)."""
    cached = g.get("ciie_edition") if has_app_context() else None
    if cached is not None:
        return cached
    edition = db.session.scalars(sa.select(m.Edition).where(m.Edition.is_current)).one_or_none()
    if edition is None:
        raise WorkflowError(_l("No edition is open yet. An administrator must create one."), 503)
    g.ciie_edition = edition
    return edition


def delegation_deadline(edition: m.Edition, delegation_id: int | None) -> datetime:
    """The delegation deadline, moved later if an admin extended it for this delegation."""
    deadline = edition.delegation_deadline
    if delegation_id is not None:
        until = db.session.scalar(
            sa.select(m.DelegationExtension.until).where(
                m.DelegationExtension.edition_id == edition.id,
                m.DelegationExtension.delegation_id == delegation_id,
            )
        )
        if until is not None and until > deadline:
            deadline = until
    return deadline


def _local(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def require_delegation_window(edition: m.Edition, delegation_id: int | None) -> None:
    """Registration, review, tagging and locking close at the delegation deadline."""
    deadline = delegation_deadline(edition, delegation_id)
    if now() > deadline:
        raise WorkflowError(_l(
            "The deadline for registration, review, tagging and locking passed on %(deadline)s "
            "(Beijing time).", deadline=_local(deadline)))
