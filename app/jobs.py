"""rq jobs: small, idempotent, take ids, re-read state, safe to run twice."""
from __future__ import annotations

import logging

import sqlalchemy as sa

from app import models as m
from app.clock import now
from app.extensions import db

log = logging.getLogger(__name__)

NS = m.NotificationStatus
MAX_ATTEMPTS = 5


def send_notification(notification_id: int) -> str:
    """Deliver one queued notification. A sent one is never sent again; a failure is recorded
    and re-raised so rq retries it."""
    from app.gateways.mail import send_email
    from app.gateways.sms import sms_gateway

    # Claim the row: only one worker moves it out of 'queued'/'failed' at a time.
    notification = db.session.scalars(
        sa.select(m.Notification).where(m.Notification.id == notification_id)
        .with_for_update()
    ).one_or_none()
    if notification is None or notification.status is NS.sent:
        db.session.rollback()
        return "skipped"
    notification.attempts += 1
    try:
        if notification.channel is m.NotificationChannel.sms:
            sms_gateway().send(notification.recipient, notification.body)
        else:
            send_email(notification.recipient, notification.subject or "", notification.body)
    except Exception as exc:  # the provider's error, whatever it is, is kept for the log view
        notification.status = NS.failed
        notification.last_error = str(exc)[:500]
        db.session.commit()
        log.warning("notification %s failed: %s", notification_id, exc)
        if notification.attempts < MAX_ATTEMPTS:
            raise
        return "failed"
    notification.status = NS.sent
    notification.sent_at = now()
    notification.last_error = None
    db.session.commit()
    return "sent"
