"""The delegation tags persons and locks them ("lock and submit"): visitors then owe the badge
fee, staff and VIPs go straight to security review. Badge-reuse persons may only be upgraded.
Each lock sends each unit one SMS and one e-mail about what it must pay."""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import sqlalchemy as sa
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from app import models as m
from app.clock import SHANGHAI, now
from app.extensions import db
from app.formatting import fmt_money
from app.scoping.actor import WRITE, Actor
from app.scoping.rules import scoped
from app.workflow.errors import BatchResult, WorkflowError
from app.workflow.notices import Notice, create_notices, enqueue_sends
from app.workflow.persons import PERSON_MOVES, person_label
from app.workflow.transitions import Check, as_id_select, move
from app.workflow.units import require_review_window

PS = m.PersonStatus
PR = m.PersonRegistration
UR = m.UnitRegistration
RANK = {m.Tag.visitor: 0, m.Tag.staff: 1, m.Tag.vip: 2}
PAYING = (m.Tag.visitor,)
LOCKED = (PS.awaiting_payment, PS.in_order, PS.awaiting_review, PS.approved, PS.rejected,
          PS.badge_issued, PS.refunded)


def tag_rank(column) -> sa.Case:
    return sa.case({t.value: r for t, r in RANK.items()}, value=column, else_=-1)


def unit_approved() -> Check:
    return (PR.unit_registration_id.in_(sa.select(UR.id).where(
        UR.status == m.UnitStatus.approved)), _l("the unit is not approved yet"))


def _merge(*parts: BatchResult) -> BatchResult:
    merged = BatchResult()
    for part in parts:
        merged.done += part.done
        merged.refused += part.refused
    return merged


def tag_persons(actor: Actor, ids: Iterable[int] | sa.Select, tag: m.Tag) -> BatchResult:
    """Tag submitted persons (any tag, changeable until the lock). A badge-reuse person keeps
    its old tag unless upgraded: visitor → staff or VIP, staff → VIP; a reused VIP stays."""
    tag = m.Tag(tag)
    require_review_window(actor)
    selected = as_id_select(PR, ids)
    # Locked persons are named as such (one query), and left out of the moves below.
    locked = db.session.execute(scoped(
        sa.select(PR.id, person_label().label("label"))
        .where(PR.id.in_(selected), PR.status.in_(LOCKED)), PR, actor, WRITE)).all()
    open_rows = sa.select(PR.id).where(PR.id.in_(selected), PR.status.not_in(LOCKED))
    plain = move(
        actor, PR, open_rows.where(PR.is_reuse.is_(False)),
        PERSON_MOVES["tag"], label=person_label(),
        checks=[unit_approved()], values={"tag": tag}, reason=tag.value, commit=False)
    reused = move(
        actor, PR, open_rows.where(PR.is_reuse.is_(True)),
        PERSON_MOVES["tag_reuse"], label=person_label(),
        checks=[unit_approved(),
                (PR.previous_tag != m.Tag.vip, _l("a reused VIP badge keeps its tag")),
                (tag_rank(PR.tag) < RANK[tag],
                 _l("a reused badge's tag can only be upgraded (visitor → staff or VIP, "
                    "staff → VIP)"))],
        values={"tag": tag}, reason=tag.value, commit=False)
    result = _merge(plain, reused)
    for row in locked:
        result.refuse(row.id, row.label, _l("the person is locked: the tag can no longer change"))
    db.session.commit()
    return result


def lock_persons(actor: Actor, ids: Iterable[int] | sa.Select) -> BatchResult:
    """Lock and submit: visitors → awaiting payment, staff and VIPs → awaiting review. Each unit
    with persons to pay gets one SMS and one e-mail; upgraded reused badges are announced."""
    edition = require_review_window(actor)
    selected = as_id_select(PR, ids)
    delegation_id = actor.delegation_id
    if delegation_id is None:
        raise WorkflowError(_l("Only a delegation can lock persons."), 403)
    batch = m.LockBatch(edition_id=edition.id, delegation_id=delegation_id,
                        locked_by_id=actor.user_id, locked_at=now())
    db.session.add(batch)
    db.session.flush()
    checks = [unit_approved(), (PR.tag.is_not(None), _l("tag the person first"))]
    values = {"lock_batch_id": batch.id, "status_changed_at": now()}
    paying = move(actor, PR, sa.select(PR.id).where(PR.id.in_(selected), PR.tag.in_(PAYING)),
                  PERSON_MOVES["lock_paying"], label=person_label(), checks=checks,
                  values=values, commit=False)
    free = move(actor, PR, sa.select(PR.id).where(PR.id.in_(selected),
                                                  sa.or_(PR.tag.is_(None),
                                                         PR.tag.not_in(PAYING))),
                PERSON_MOVES["lock_free"], label=person_label(), checks=checks,
                values=values, commit=False)
    result = _merge(paying, free)
    if not result.done:
        db.session.rollback()
        return result
    batch.person_count = len(result.done)
    notification_ids = create_notices(lock_notices(batch, edition))
    db.session.commit()
    enqueue_sends(notification_ids)
    return result


def lock_notices(batch: m.LockBatch, edition: m.Edition) -> list[Notice]:
    """One SMS and one e-mail per unit of the lock: who must pay, by when and how; and which
    reused badges were upgraded and will be made anew (one query)."""
    rows = db.session.execute(
        sa.select(m.Unit.id, m.Unit.name, m.Unit.language, m.Unit.mobile, m.Unit.email,
                  UR.contact_mobile, UR.contact_email, m.Person.name.label("person"), PR.tag,
                  PR.is_reuse, PR.previous_tag)
        .join(UR, UR.id == PR.unit_registration_id).join(m.Unit, m.Unit.id == UR.unit_id)
        .join(m.Person, m.Person.id == PR.person_id)
        .where(PR.lock_batch_id == batch.id).order_by(m.Unit.id, m.Person.name)).all()
    by_unit: dict[int, list] = defaultdict(list)
    for row in rows:
        by_unit[row.id].append(row)
    # Translated once per language and filled per unit (a lock may reach 10,000 units).
    texts = {language: _lock_texts(language) for language in {row.language for row in rows}}
    fixed = {"fee": fmt_money(edition.badge_fee_fen),
             "transfer": _local_day(edition.transfer_deadline),
             "online": _local_day(edition.online_pay_deadline)}
    notices = []
    for unit_id, unit_rows in by_unit.items():
        first = unit_rows[0]
        payers = [r.person for r in unit_rows if r.tag in PAYING]
        upgraded = [r.person for r in unit_rows if r.is_reuse and r.tag != r.previous_tag]
        email = first.contact_email or first.email
        mobile = first.contact_mobile or first.mobile
        pay_subject, pay_body, upgrade_subject, upgrade_body = texts[first.language]
        if payers:
            body = pay_body % {"unit": first.name, "count": len(payers),
                               "names": "、".join(payers), **fixed}
            notices += [
                Notice(f"lock:{batch.id}:{unit_id}:pay:email", m.NotificationChannel.email,
                       unit_id, email or "", first.language, pay_subject, body),
                Notice(f"lock:{batch.id}:{unit_id}:pay:sms", m.NotificationChannel.sms,
                       unit_id, mobile or "", first.language, None, body, "payment_due",
                       {"unit": first.name, "count": str(len(payers)), **fixed})]
        if upgraded:
            body = upgrade_body % {"unit": first.name, "names": "、".join(upgraded)}
            notices += [
                Notice(f"lock:{batch.id}:{unit_id}:upgrade:email", m.NotificationChannel.email,
                       unit_id, email or "", first.language, upgrade_subject, body),
                Notice(f"lock:{batch.id}:{unit_id}:upgrade:sms", m.NotificationChannel.sms,
                       unit_id, mobile or "", first.language, None, body, "badges_upgraded",
                       {"unit": first.name, "count": str(len(upgraded))})]
    return notices


def _local_day(moment) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d")


def _lock_texts(language: str) -> tuple[str, str, str, str]:
    """The payment notice's and the upgrade notice's subject and body in `language`; the
    bodies are templates (%(unit)s, %(count)d, %(names)s, %(fee)s, %(transfer)s, %(online)s)
    filled per unit exactly as gettext would fill them."""
    with force_locale(language):
        return (_("CIIE badge fees to pay"),
                _("%(unit)s: the badges of %(count)d person(s) are waiting for payment: "
                  "%(names)s. Badge fee %(fee)s per person. Log in, choose them under Persons "
                  "and submit the badge order, then pay by bank transfer (with the voucher) by "
                  "%(transfer)s or by QR code / B2B gateway by %(online)s (Beijing time)."),
                _("Reused badges upgraded"),
                _("%(unit)s: the delegation upgraded the tag of %(names)s. Their earlier badge "
                  "cannot be reused; a new badge will be made once they pass security review."))
