"""SMS delivery reports and the facts the operator's page shows of the SMS provider.

A provider reports delivery after it took the message: `record_sms_receipts` (a job the sweeper
enqueues) asks it for the reports of the messages still "sent" and moves each to delivered or
failed (NOTICE_MOVES, audited as the system's with the provider's code as the reason); the row
keeps the code and the time of the report.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from app import models as m
from app.clock import now
from app.extensions import db
from app.gateways.sms import SentSms, sms_gateway
from app.scoping.actor import SYSTEM
from app.workflow.notices import NOTICE_MOVES
from app.workflow.transitions import move

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
    waiting = db.session.execute(
        sa.select(N.id, N.provider_message_id, N.recipient, N.sent_at)
        .where(N.status == NS.sent, N.provider_message_id.is_not(None),
               N.provider == gateway.provider, N.sent_at >= now() - RECEIPT_WINDOW)
        .order_by(N.sent_at).limit(RECEIPT_BATCH)).all()
    pending = [SentSms(r.provider_message_id, r.recipient, r.sent_at) for r in waiting]
    counts = {"asked": len(pending), "delivered": 0, "failed": 0}
    if not pending and gateway.provider != "tencent":
        return counts
    # Tencent hands out every report once, whichever message it is about: always pull.
    receipts = gateway.receipts(pending)
    ids = dict(db.session.execute(
        sa.select(N.provider_message_id, N.id).where(
            N.provider == gateway.provider, N.status == NS.sent,
            N.provider_message_id.in_({r.message_id for r in receipts}))).tuples().all()) \
        if receipts else {}
    at = now()
    # One move per (outcome, provider code): a poll's reports share a handful of codes.
    groups: dict[tuple[bool, str], list[Any]] = defaultdict(list)
    for r in receipts:
        if r.message_id in ids:
            groups[(r.delivered, r.code[:64])].append(r)
    for (delivered, code), reports in sorted(groups.items()):
        done = move(SYSTEM, N, [ids[r.message_id] for r in reports],
                    NOTICE_MOVES["delivered" if delivered else "undelivered"],
                    label=N.recipient, reason=code, commit=False,
                    values={"provider_code": code, "last_error": None if delivered else code})
        counts["delivered" if delivered else "failed"] += len(done.done)
        moved = set(done.done)
        # The time the provider gave for each report (one statement, executemany).
        times = [{"nid": ids[r.message_id], "at": r.at or at} for r in reports
                 if ids[r.message_id] in moved]
        if times:
            db.session.execute(sa.update(N.__table__).where(
                N.__table__.c.id == sa.bindparam("nid")).values(
                receipt_at=sa.bindparam("at")), times)
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
