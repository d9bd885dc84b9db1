"""Notices to units (SMS and e-mail), written in the unit's language, logged, never doubled.

A notice is a Notification row with a dedupe key (e.g. "unit-decision:<registration>:<state>:
email"); creating one that exists does nothing. Sending happens in an rq job after the commit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import sqlalchemy as sa
from flask_babel import force_locale
from rq import Retry
from sqlalchemy.dialects import postgresql, sqlite

from app import models as m
from app.extensions import db, queue


@dataclass
class Notice:
    dedupe_key: str
    channel: m.NotificationChannel
    unit_id: int | None
    recipient: str
    language: str
    subject: str | None
    body: str


def render(language: str, fn: Callable[[], tuple[str | None, str]]) -> tuple[str | None, str]:
    """Render (subject, body) in the recipient's language."""
    with force_locale(language):
        subject, body = fn()
        return (str(subject) if subject else None), str(body)


def create_notices(notices: Iterable[Notice]) -> list[int]:
    """Insert the notices that do not exist yet (one statement); returns the new ids."""
    rows = [n.__dict__ for n in notices if n.recipient]
    if not rows:
        return []
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(m.Notification).values(
        [{**r, "status": m.NotificationStatus.queued, "attempts": 0} for r in rows]
    ).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(m.Notification.id)
    return list(db.session.scalars(stmt))


def enqueue_sends(notification_ids: Iterable[int]) -> None:
    """After the commit: one job per notification, retried with back-off on failure."""
    from app.jobs import send_notification

    for nid in notification_ids:
        if queue.inline:
            try:
                send_notification(nid)
            except Exception:  # recorded on the row; an operator can retry from the log view
                db.session.rollback()
        else:
            queue.enqueue(send_notification, nid, job_id=f"notify-{nid}",
                          retry=Retry(max=4, interval=[10, 60, 300, 900]))


def unit_decision_notices(registration_ids: list[int], decision: m.UnitStatus) -> list[Notice]:
    """E-mails telling units the delegation's decision on their registration (one query)."""
    from flask_babel import gettext as _

    UR = m.UnitRegistration
    rows = db.session.execute(
        sa.select(UR.id, UR.unit_number, UR.review_reason, UR.contact_email, UR.reviewed_at,
                  m.Unit.id.label("unit_id"), m.Unit.name, m.Unit.email, m.Unit.language,
                  m.Edition.number.label("edition"))
        .join(m.Unit, m.Unit.id == UR.unit_id).join(m.Edition, m.Edition.id == UR.edition_id)
        .where(UR.id.in_(registration_ids))
    ).all()
    notices = []
    for row in rows:
        def text(row=row):
            args = {"unit": row.name, "edition": row.edition, "number": row.unit_number or "",
                    "reason": row.review_reason or ""}
            if decision is m.UnitStatus.approved:
                return (_("Your CIIE registration was approved"),
                        _("Dear %(unit)s, your registration for the %(edition)sth CIIE was "
                          "approved. Your unit number is %(number)s; your people can join your "
                          "unit in the CIIE app with it.", **args))
            if decision is m.UnitStatus.returned:
                return (_("Your CIIE registration was returned for changes"),
                        _("Dear %(unit)s, your delegation returned your registration for the "
                          "%(edition)sth CIIE for changes: %(reason)s Please log in, correct "
                          "it and submit it again.", **args))
            return (_("Your CIIE registration was rejected"),
                    _("Dear %(unit)s, your registration for the %(edition)sth CIIE was "
                      "rejected: %(reason)s", **args))

        subject, body = render(row.language, text)
        notices.append(Notice(
            # One notice per decision: a unit returned twice hears of each return.
            dedupe_key=f"unit-decision:{row.id}:{decision.value}:"
                       f"{int(row.reviewed_at.timestamp()) if row.reviewed_at else 0}",
            channel=m.NotificationChannel.email, unit_id=row.unit_id,
            recipient=row.contact_email or row.email or "", language=row.language,
            subject=subject, body=body))
    return notices
