"""The outbox sweeper (`flask ciie sweep`, run by a timer): work committed to the database whose
job is not in Redis (Redis did not answer when it was committed, or lost its data) is enqueued
again, and tasks whose worker died are marked failed. Jobs are idempotent and claim their row,
so a job enqueued twice still does its work, and sends its message, once."""
from __future__ import annotations

from typing import Callable

import sqlalchemy as sa
from flask import current_app

from app import models as m
from app.extensions import db, queue
from app.queue import PIPELINE_SIZE, REDIS_ERRORS, QueueUnavailable
from app.tasks import enqueue_task, fail_stalled_tasks
from app.workflow.invoices import MAKE_PDF
from app.workflow.notices import enqueue_sends, send_job_id
from app.workflow.refunds import ONLINE, enqueue_refund

POLL_SMS_RECEIPTS = "app.jobs.poll_sms_receipts"
POLL_SMS_RECEIPTS_JOB = "sms-receipts"
# rq job states in which the job will still run: anything else (no job, finished, failed,
# stopped, cancelled) leaves its row to the sweeper.
LIVE_JOB_STATES = {"queued", "started", "scheduled", "deferred"}


def _without_live_job(ids: list[int], job_id: Callable[[int], str]) -> list[int]:
    """The ids among `ids` that Redis holds no live job for (one pipeline per batch)."""
    from rq.job import Job

    waiting = []
    try:
        for start in range(0, len(ids), PIPELINE_SIZE):
            batch = ids[start:start + PIPELINE_SIZE]
            pipe = queue.redis.pipeline(transaction=False)
            for each in batch:
                pipe.hget(Job.key_for(job_id(each)), "status")
            for each, status in zip(batch, pipe.execute(), strict=True):
                if status is None or status.decode() not in LIVE_JOB_STATES:
                    waiting.append(each)
    except REDIS_ERRORS as exc:
        raise QueueUnavailable(str(exc)) from exc
    return waiting


def sweep() -> dict[str, int]:
    """One pass; returns how many rows of each kind were enqueued (or tasks marked failed).
    Raises QueueUnavailable while Redis still does not answer."""
    N, BT, Inv, R = m.Notification, m.BackgroundTask, m.Invoice, m.Refund
    counts = {"stalled tasks": fail_stalled_tasks()}

    # One-time codes travel only in their job's arguments: a lost one cannot be sent again.
    notices = _without_live_job(list(db.session.scalars(
        sa.select(N.id).where(N.status == m.NotificationStatus.queued,
                              N.dedupe_key.not_like("verify:%")).order_by(N.id))),
        send_job_id)
    enqueue_sends(notices, outbox=False)
    counts["notifications"] = len(notices)

    # The SMS provider's delivery reports: one poll at a time, each sweep (app/workflow/sms.py).
    counts["sms receipt polls"] = 0
    if current_app.config.get("SMS_BACKEND", "log") != "log" and \
            _without_live_job([0], lambda _i: POLL_SMS_RECEIPTS_JOB):
        queue.enqueue(POLL_SMS_RECEIPTS, job_id=POLL_SMS_RECEIPTS_JOB)
        counts["sms receipt polls"] = 1

    tasks = _without_live_job(list(db.session.scalars(
        sa.select(BT.id).where(BT.status == m.TaskStatus.queued).order_by(BT.id))),
        lambda i: f"task-{i}")
    for task_id in tasks:
        enqueue_task(task_id, outbox=False)
    counts["tasks"] = len(tasks)

    # E-invoices and reversals waiting for the invoicing platform to issue them.
    invoices = _without_live_job(list(db.session.scalars(
        sa.select(Inv.id).where(Inv.kind == m.InvoiceKind.e_normal,
                                Inv.status == m.InvoiceStatus.requested)
        .order_by(Inv.id))), lambda i: f"invoice-pdf-{i}")
    for invoice_id in invoices:
        queue.enqueue(MAKE_PDF, invoice_id, job_id=f"invoice-pdf-{invoice_id}")
    counts["invoices"] = len(invoices)

    # Online refunds sent to their provider and not settled: ask again.
    refunds = _without_live_job(list(db.session.scalars(
        sa.select(R.id).join(m.Payment).where(R.status == m.RefundStatus.sent,
                                              m.Payment.channel.in_(ONLINE)).order_by(R.id))),
        lambda i: f"refund-{i}")
    for refund_id in refunds:
        enqueue_refund(refund_id, outbox=False)
    counts["refunds"] = len(refunds)
    db.session.rollback()
    return counts
