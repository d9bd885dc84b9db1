"""Notices to units (SMS and e-mail), written in the unit's language, logged, never doubled.

A notice is a Notification row with a dedupe key (e.g. "unit-decision:<registration>:<state>:
email"); creating one that exists does nothing. Sending happens in an rq job after the commit.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterable

import sqlalchemy as sa
from flask import current_app
from flask_babel import force_locale
from rq import Retry
from sqlalchemy.dialects import postgresql, sqlite

from app import models as m
from app.extensions import db, queue
from app.models import utcnow
from app.scoping.actor import Actor
from app.workflow.errors import BatchResult
from app.workflow.transitions import Move, move, table

# The send job, by its dotted path (app.jobs imports the workflow, not the other way round).
SEND_NOTIFICATION = "app.jobs.send_notification"
# With Redis, one job sends the queued notices of a block of SEND_BLOCK ids: a lock's 20,000
# notices are 200 jobs, not 20,000 (building and storing an rq job costs more than the row).
SEND_NOTIFICATIONS = "app.jobs.send_notifications"
SEND_BLOCK = 100
# Finance's move of a notice (an operational re-queue) and the provider's delivery report of an
# SMS it took (app/workflow/sms.py, audited as the system's, the provider's code as the reason);
# sending it is the job's bookkeeping on the row it locked (app/jobs.py).
NOTICE_MOVES = table({
    "resend": Move(from_={m.NotificationStatus.failed}, to=m.NotificationStatus.queued),
    "delivered": Move(from_={m.NotificationStatus.sent}, to=m.NotificationStatus.delivered),
    "undelivered": Move(from_={m.NotificationStatus.sent}, to=m.NotificationStatus.failed),
})


@dataclass
class Notice:
    dedupe_key: str
    channel: m.NotificationChannel
    unit_id: int | None
    recipient: str
    language: str
    subject: str | None
    body: str
    # An SMS's template kind and parameters (app/gateways/sms.py SMS_TEMPLATES).
    sms_template: str | None = None
    sms_params: dict[str, str] | None = None


def render(language: str, fn: Callable[[], tuple[str | None, str]]) -> tuple[str | None, str]:
    """Render (subject, body) in the recipient's language."""
    with force_locale(language):
        subject, body = fn()
        return (str(subject) if subject else None), str(body)


NOTICE_COLUMNS = ("dedupe_key", "channel", "unit_id", "recipient", "language", "subject", "body",
                  "sms_template", "sms_params")


def create_notices(notices: Iterable[Notice]) -> list[int]:
    """Insert the notices that do not exist yet, in one statement whatever their number; returns
    the new ids. On PostgreSQL the rows travel as one array per column (a lock over 10,000 units
    writes 20,000 notices: as VALUES that would pass PostgreSQL's 65,535-parameter limit)."""
    rows = [dict(n.__dict__) for n in notices if n.recipient]
    if not rows:
        return []
    fixed = {"status": m.NotificationStatus.queued, "attempts": 0, "created_at": utcnow()}
    if db.session.get_bind().dialect.name == "postgresql":
        types = {"unit_id": sa.Integer}
        # The parameters travel as JSON text, cast back to JSON in the select.
        for r in rows:
            r["sms_params"] = json.dumps(r["sms_params"], ensure_ascii=False) \
                if r["sms_params"] is not None else None
        source = sa.func.unnest(*[
            sa.bindparam(f"notice_{c}", [getattr(r[c], "value", r[c]) for r in rows],
                         type_=postgresql.ARRAY(types.get(c, sa.Text)))
            for c in NOTICE_COLUMNS]).table_valued(*NOTICE_COLUMNS).render_derived("notice_rows")
        select = sa.select(*[sa.cast(source.c[c], postgresql.JSON) if c == "sms_params"
                             else source.c[c] for c in NOTICE_COLUMNS],
                           *[sa.literal(v, m.Notification.__table__.c[k].type)
                             for k, v in fixed.items()])
        stmt = postgresql.insert(m.Notification).from_select(
            [*NOTICE_COLUMNS, *fixed], select)
    else:
        stmt = sqlite.insert(m.Notification).values([{**r, **fixed} for r in rows])
    stmt = stmt.on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(
        m.Notification.id)
    return list(db.session.scalars(stmt))


def _retry_intervals() -> list[int]:
    return [int(s) for s in current_app.config["NOTIFY_RETRY_INTERVALS"].split(",")]


def send_retry() -> Retry:
    """Back-off between the tries of a failed send (NOTIFY_RETRY_INTERVALS, in seconds)."""
    intervals = _retry_intervals()
    return Retry(max=len(intervals), interval=intervals)


def send_job_id(notification_id: int) -> str:
    """The rq job that sends a queued notice: its block's (the sweeper asks Redis for it)."""
    return f"notify-block-{notification_id // SEND_BLOCK}"


def retry_send(notification_id: int) -> None:
    """A notice whose try in its block's job failed: its own job tries again on the usual
    back-off, with the tries it has left (first after the first interval)."""
    first, *rest = _retry_intervals()
    queue.queue.enqueue_in(timedelta(seconds=first), SEND_NOTIFICATION, notification_id,
                           job_id=f"notify-{notification_id}",
                           retry=Retry(max=len(rest), interval=rest) if rest else None)


def enqueue_sends(notification_ids: Iterable[int], outbox: bool = True) -> None:
    """After the commit: one job per block of notice ids (SEND_BLOCK), each sending that
    block's queued notices; the job itself is retried with back-off, a notice that fails in it
    gets its own retrying job (queued in pipelines: a lock over thousands of units costs a
    few round trips to Redis). The rows are the outbox: if Redis does not answer, the sweeper
    enqueues them later."""
    # Notices a non-committing workflow call noted in the same transaction go along.
    ids = list(notification_ids) + db.session.info.pop(_AFTER_COMMIT, [])
    if queue.inline:
        for nid in ids:
            try:
                queue.enqueue(SEND_NOTIFICATION, nid)
            except Exception:  # recorded on the row; finance can send it again
                db.session.rollback()
        return
    blocks = sorted({nid // SEND_BLOCK for nid in ids})
    queue.enqueue_many(SEND_NOTIFICATIONS, [
        ((block * SEND_BLOCK, (block + 1) * SEND_BLOCK - 1), send_job_id(block * SEND_BLOCK))
        for block in blocks], outbox=outbox, retry=send_retry())


def resend_notifications(actor: Actor, ids: Iterable[int] | sa.Select) -> BatchResult:
    """Finance sends failed notices again: back to queued (audited), then a job sends each;
    its attempts keep counting. A sent notice is never sent again (wrong state)."""
    result = move(actor, m.Notification, ids, NOTICE_MOVES["resend"],
                  label=m.Notification.recipient)
    enqueue_sends(result.done)
    return result


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


# --------------------------------------------------------------------------------------------
# Notices sent once the caller commits (issue 12): a workflow function that does not commit
# (record_overpayment, called inside the caller's transaction) notes the notices it created;
# the caller sends them after its commit. The rows are the outbox either way: what no caller
# sends, the sweeper enqueues.
# --------------------------------------------------------------------------------------------

_AFTER_COMMIT = "ciie_notices_after_commit"


def send_after_commit(notification_ids: Iterable[int]) -> None:
    """Note notices created in the current transaction, for send_noted() after its commit."""
    db.session.info.setdefault(_AFTER_COMMIT, []).extend(notification_ids)


def send_noted() -> None:
    """After the commit: enqueue the notices noted by send_after_commit (once; any
    enqueue_sends after the commit sends them too)."""
    if db.session.info.get(_AFTER_COMMIT):
        enqueue_sends([])


def unit_contacts(unit_ids: Iterable[int]) -> dict[int, tuple[str, str, str, str]]:
    """{unit id: (name, language, e-mail, mobile)}: the contacts of the unit's latest
    registration, else the account's own (one query)."""
    UR = m.UnitRegistration
    ids = list(set(unit_ids))
    if not ids:
        return {}
    latest = sa.select(sa.func.max(UR.id)).where(UR.unit_id.in_(ids)).group_by(UR.unit_id)
    contacts = {row.unit_id: row for row in db.session.execute(
        sa.select(UR.unit_id, UR.contact_email, UR.contact_mobile).where(UR.id.in_(latest)))}
    found = {}
    for unit in db.session.execute(sa.select(m.Unit.id, m.Unit.name, m.Unit.language,
                                             m.Unit.email, m.Unit.mobile)
                                   .where(m.Unit.id.in_(ids))):
        reg = contacts.get(unit.id)
        found[unit.id] = (unit.name, unit.language,
                          (reg.contact_email if reg else None) or unit.email or "",
                          (reg.contact_mobile if reg else None) or unit.mobile or "")
    return found


def unit_notices(key: str, unit_id: int, text: Callable[[], tuple[str | None, str]],
                 contacts: dict[int, tuple[str, str, str, str]] | None = None,
                 sms_template: str | None = None, sms_params: dict[str, str] | None = None
                 ) -> list[Notice]:
    """An e-mail and an SMS to the unit, in its language (dedupe keys `<key>:email|sms`); the
    SMS goes as the provider's template `sms_template` with `sms_params`."""
    contacts = contacts if contacts is not None else unit_contacts([unit_id])
    if unit_id not in contacts:
        return []
    _name, language, email, mobile = contacts[unit_id]
    subject, body = render(language, text)
    return [Notice(f"{key}:email", m.NotificationChannel.email, unit_id, email, language,
                   subject, body),
            Notice(f"{key}:sms", m.NotificationChannel.sms, unit_id, mobile, language, None,
                   body, sms_template, sms_params)]


def finance_notices(key: str, text: Callable[[], tuple[str | None, str]]) -> list[Notice]:
    """An e-mail to every active finance officer (no unit's: the unit never reads it)."""
    from flask_appbuilder.security.sqla.models import Role

    from app.scoping.actor import FINANCE

    rows = db.session.execute(
        sa.select(m.User.id, m.User.email).join(m.User.roles)
        .where(Role.name == FINANCE, m.User.active.is_(True)).order_by(m.User.id)).all()
    notices = []
    for row in rows:
        subject, body = render("zh", text)
        notices.append(Notice(f"{key}:finance:{row.id}", m.NotificationChannel.email, None,
                              row.email or "", "zh", subject, body))
    return notices
