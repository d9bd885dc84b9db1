"""rq jobs: small, idempotent, take ids, re-read state, safe to run twice. The workflow
enqueues them by dotted name ("app.jobs.send_refund"): jobs import the workflow, never back."""
from __future__ import annotations

import logging

import sqlalchemy as sa
from flask_babel import force_locale

from app import models as m
from app.clock import now
from app.extensions import db
from app.gateways.mail import send_email
from app.gateways.payments import gateway_for
from app.gateways.sms import sms_gateway
from app.scoping.actor import SYSTEM
from app.workflow.invoices import make_pdf
from app.workflow.refunds import record_provider_answer
from app.workflow.registration import verification_text

log = logging.getLogger(__name__)

NS = m.NotificationStatus
MAX_ATTEMPTS = 5


def send_verification_code(notification_id: int, code: str) -> str:
    """Send a one-time code. The code is only in this job's arguments: the Notification row
    keeps the redacted text, and the code store keeps only a hash."""
    notification = _claim(notification_id)
    if notification is None:
        return "skipped"
    with force_locale(notification.language):
        subject, body = verification_text(code)
    return _deliver(notification, str(subject), str(body))


def send_notification(notification_id: int) -> str:
    """Deliver one queued notification. A sent one is never sent again; a failure is recorded
    and re-raised so rq retries it."""
    notification = _claim(notification_id)
    if notification is None:
        return "skipped"
    return _deliver(notification, notification.subject or "", notification.body)


def _claim(notification_id: int) -> m.Notification | None:
    """Lock the row so only one worker sends it; None if it is gone or already sent."""
    notification = db.session.scalars(
        sa.select(m.Notification).where(m.Notification.id == notification_id)
        .with_for_update()
    ).one_or_none()
    if notification is None or notification.status is NS.sent:
        db.session.rollback()
        return None
    return notification


def _deliver(notification: m.Notification, subject: str, body: str) -> str:
    """Send through the channel's gateway and record the outcome on the row."""
    notification.attempts += 1
    try:
        if notification.channel is m.NotificationChannel.sms:
            sms_gateway().send(notification.recipient, body)
        else:
            send_email(notification.recipient, subject, body)
    except Exception as exc:  # the provider's error, whatever it is, is kept for the log view
        notification.status = NS.failed
        notification.last_error = str(exc)[:500]
        db.session.commit()
        log.warning("notification %s failed: %s", notification.id, exc)
        if notification.attempts < MAX_ATTEMPTS:
            raise
        return "failed"
    notification.status = NS.sent
    notification.sent_at = now()
    notification.last_error = None
    db.session.commit()
    return "sent"


class ProviderPending(Exception):
    """The provider has not settled the refund yet: rq tries again later."""


def send_refund(refund_id: int) -> str:
    """Refund an online payment through its provider. The refund number is the provider's
    idempotency key, so a retried or doubled job never pays twice."""
    refund = db.session.get(m.Refund, refund_id)
    if refund is None or refund.status is not m.RefundStatus.sent:
        return "skipped"
    payment = refund.payment
    answer = gateway_for(payment.channel).refund(payment, refund.number, refund.amount_fen)
    outcome = record_provider_answer(SYSTEM, refund_id, answer.status,
                                     answer.provider_refund_id, answer.message)
    if outcome == "pending":
        raise ProviderPending(refund.number)
    return outcome


def make_invoice_pdf(invoice_id: int) -> str:
    """Issue a requested e-invoice as a PDF, or make a red-letter reversal's PDF (idempotent:
    the invoice row is locked and an issued one is skipped)."""
    return make_pdf(invoice_id)
