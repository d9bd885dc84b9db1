"""SMS delivery reports and the facts the operator's page shows of the SMS provider.

A provider reports delivery after it took the message: `record_sms_receipts` (a job the sweeper
enqueues) asks it for the reports of the messages still "sent" and moves each to delivered or
failed with the provider's code. Bookkeeping on the row like the send itself (app/jobs.py):
no actor, so no audit row; the row keeps the code and the time of the report.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from app import models as m
from app.clock import now
from app.extensions import db
from app.gateways.sms import SentSms, sms_gateway

N = m.Notification
NS = m.NotificationStatus
# Reports older than this are not asked for (Alibaba keeps them 30 days; carriers report
# within hours): a message still unreported stays "sent".
RECEIPT_WINDOW = timedelta(days=3)
# At most this many messages per poll (one QuerySendDetails each on Alibaba).
RECEIPT_BATCH = 500


def record_sms_receipts() -> dict[str, int]:
    """One poll: {"asked": n, "delivered": n, "failed": n}."""
    gateway = sms_gateway()
    pending = [SentSms(r.provider_message_id, r.recipient, r.sent_at) for r in db.session.execute(
        sa.select(N.provider_message_id, N.recipient, N.sent_at)
        .where(N.status == NS.sent, N.provider_message_id.is_not(None),
               N.provider == gateway.provider, N.sent_at >= now() - RECEIPT_WINDOW)
        .order_by(N.sent_at).limit(RECEIPT_BATCH))]
    counts = {"asked": len(pending), "delivered": 0, "failed": 0}
    if not pending and gateway.provider != "tencent":
        return counts
    # Tencent hands out every report once, whichever message it is about: always pull.
    receipts = gateway.receipts(pending)
    at = now()
    for delivered, status in ((True, NS.delivered), (False, NS.failed)):
        rows = [{"mid": r.message_id, "code": r.code[:64], "at": r.at or at}
                for r in receipts if r.delivered is delivered]
        if not rows:
            continue
        # One statement sent with every report's values (executemany), matched by the
        # provider's id among the rows still waiting (the partial index).
        update = sa.update(N.__table__).where(
            N.__table__.c.provider == gateway.provider,
            N.__table__.c.provider_message_id == sa.bindparam("mid"),
            N.__table__.c.status == NS.sent.value,
        ).values(status=status.value, provider_code=sa.bindparam("code"),
                 receipt_at=sa.bindparam("at"),
                 last_error=None if delivered else sa.bindparam("code"))
        counts["delivered" if delivered else "failed"] += db.session.execute(
            update, rows).rowcount
    db.session.commit()
    return counts


def sms_provider_report() -> dict[str, Any]:
    """What the operator's page shows of the SMS provider: which, its mode, its last success
    and its last failure with the provider's code (two indexed queries)."""
    provider = current_app.config.get("SMS_BACKEND", "log")
    last_sent = db.session.scalar(sa.select(sa.func.max(N.sent_at)).where(
        N.provider == provider))
    last_failed = db.session.execute(
        sa.select(N.attempted_at, N.provider_code, N.last_error)
        .where(N.provider == provider, N.status == NS.failed, N.attempted_at.is_not(None))
        .order_by(N.attempted_at.desc()).limit(1)).first()
    return {"provider": provider, "mode": "sandbox" if provider == "log" else "production",
            "last_success_at": last_sent,
            "last_failure_at": last_failed.attempted_at if last_failed else None,
            "last_failure": (f"{last_failed.provider_code or ''} {last_failed.last_error or ''}"
                             .strip() if last_failed else None)}
