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
from app.gateways.sms import SmsError, SmsMessage, sms_gateway
from app.scoping.actor import SYSTEM
from app.workflow.invoices import make_pdf
from app.workflow.notices import retry_send
from app.workflow.refunds import record_provider_answer
from app.workflow.registration import verification_text
from app.workflow.sms import record_sms_receipts

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
    return _deliver(notification, str(subject), str(body), {"code": code})


def send_notification(notification_id: int) -> str:
    """Deliver one queued notification. A sent one is never sent again; a failure is recorded
    and re-raised so rq retries it."""
    notification = _claim(notification_id)
    if notification is None:
        return "skipped"
    return _deliver(notification, notification.subject or "", notification.body)


def send_notifications(first_id: int, last_id: int) -> dict[str, int]:
    """Deliver the queued notifications with ids first_id..last_id (one job per block of ids,
    app/workflow/notices.py), each claimed on its own row as send_notification does: a block
    run twice, or beside a notice's own job, sends every notice once. A notice that fails is
    handed to its own job, which retries it on the usual back-off; one-time codes are left to
    their own jobs (the code is only in their arguments)."""
    N = m.Notification
    ids = list(db.session.scalars(sa.select(N.id).where(
        N.id.between(first_id, last_id), N.status == NS.queued,
        N.dedupe_key.not_like("verify:%")).order_by(N.id)))
    db.session.rollback()
    outcomes: dict[str, int] = {}
    for notification_id in ids:
        notification = _claim(notification_id)
        if notification is None or notification.status is not NS.queued:
            # Sent meanwhile, or failed and waiting for its own job's retry.
            db.session.rollback()
            outcome = "skipped"
        else:
            try:
                outcome = _deliver(notification, notification.subject or "",
                                   notification.body)
            except Exception:  # recorded on the row by _deliver; its own job tries again
                retry_send(notification_id)
                outcome = "retrying"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def _claim(notification_id: int) -> m.Notification | None:
    """Lock the row so only one worker sends it; None if it is gone or already sent."""
    notification = db.session.scalars(
        sa.select(m.Notification).where(m.Notification.id == notification_id)
        .with_for_update()
    ).one_or_none()
    # Sent, delivered, or reported undelivered by the provider: this job has nothing to do
    # (finance's "send again" puts a failed one back to queued).
    if notification is None or notification.status in (NS.sent, NS.delivered) or (
            notification.status is NS.failed and notification.receipt_at is not None):
        db.session.rollback()
        return None
    return notification


def _deliver(notification: m.Notification, subject: str, body: str,
             sms_params: dict[str, str] | None = None) -> str:
    """Send through the channel's gateway and record the outcome on the row. An SMS goes as
    its template with its parameters (`sms_params` stand in for redacted ones)."""
    notification.attempts += 1
    notification.attempted_at = now()
    try:
        if notification.channel is m.NotificationChannel.sms:
            gateway = sms_gateway()
            notification.provider = gateway.provider
            sent = gateway.send(SmsMessage(
                notification.recipient, notification.language, notification.sms_template,
                {**(notification.sms_params or {}), **(sms_params or {})}, body))
            notification.provider_message_id = sent.message_id
        else:
            send_email(notification.recipient, subject, body)
    except Exception as exc:  # the provider's error, whatever it is, is kept for the log view
        notification.status = NS.failed
        notification.last_error = str(exc)[:500]
        notification.provider_code = exc.code[:64] if isinstance(exc, SmsError) else None
        db.session.commit()
        log.warning("notification %s failed: %s", notification.id, exc)
        # A provider's refusal (bad number, template not approved, wrong key) would be
        # refused again: only throttling and outages are worth rq's retries.
        if notification.attempts < MAX_ATTEMPTS and getattr(exc, "transient", True):
            raise
        return "failed"
    notification.status = NS.sent
    notification.sent_at = now()
    notification.last_error = None
    notification.provider_code = None
    notification.receipt_at = None
    db.session.commit()
    return "sent"


def poll_sms_receipts() -> dict[str, int]:
    """Record the delivery reports of the SMS the provider took (the sweeper enqueues it)."""
    return record_sms_receipts()


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
    """Have the invoicing platform issue a requested e-invoice or red-letter reversal and store
    its number and files (idempotent: the row is locked and an issued one is skipped; raises
    EInvoicePending while the platform is still issuing it, so rq asks again)."""
    return make_pdf(invoice_id)
