"""Gate verification: read a badge's QR code, answer at a glance whether the holder may enter
today, and log every scan (who, when, where, the result).

The answer is computed with the system's own view of badges and persons, not the gate user's
scope: gate staff never list or open badges or persons; they learn only what one scanned card
says (name, photo, unit, tag, entry dates), and only for a code this system signed.

Offline gates (the /gate/offline page) verify the Ed25519 signature themselves. `gate_sync`
gives them what they judge with: the public keys, the deactivated badges, the badges whose
holder was cancelled, and per badge issued for this expo its code's nonce tag and entry days,
changed since the gate's last sync (numbers and ids only: no names, no photos). Their scans
come back through `record_offline_scans`, idempotent by the scanner's own scan id.
"""
from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.dialects import postgresql, sqlite

from app import models as m
from app import storage
from app.badge_tokens import NONCE_TAG_BYTES, published_keys, read_token
from app.clock import now, today_shanghai
from app.extensions import db
from app.scoping.actor import Actor
from app.workflow.audit import record_many
from app.workflow.editions import current_edition

SR = m.ScanResult
PS = m.PersonStatus
GONE = (PS.cancelled, PS.refunded)

MESSAGES = {
    SR.valid: _l("Valid: the holder may enter today."),
    SR.not_today: _l("Not an entry date: today is not one of the holder's entry dates."),
    SR.deactivated: _l("This badge was deactivated. Do not let the holder in."),
    SR.forged: _l("This code was not issued by the CIIE system (forged, altered or damaged)."),
    SR.unknown: _l("No badge valid for this expo matches this code."),
    SR.cancelled: _l("The holder's registration was cancelled. Do not let the holder in."),
}


@dataclass
class ScanOutcome:
    """What the gate sees: the result and, for a genuine card, whose it is."""

    result: m.ScanResult
    today: date
    scan_id: int | None = None
    badge: m.Badge | None = None
    entry_dates: list[date] = field(default_factory=list)
    photo: str | None = None  # a data: URI of the person's thumbnail

    @property
    def valid(self) -> bool:
        return self.result is SR.valid

    @property
    def message(self) -> Any:
        return MESSAGES[self.result]

    def as_json(self) -> dict:
        badge = self.badge
        return {
            "result": self.result.value,
            "valid": self.valid,
            "label": str(self.result.label),
            "message": str(self.message),
            "today": self.today.isoformat(),
            "entry_today": self.today in self.entry_dates,
            "entry_dates": [d.isoformat() for d in self.entry_dates],
            "scan_id": self.scan_id,
            "badge": None if badge is None else {
                "number": badge.number, "tag": badge.tag.value,
                "tag_label": str(badge.tag.label), "active": badge.active},
            "person": None if badge is None else {
                "name": badge.printed_name, "unit": badge.printed_unit,
                "delegation": badge.printed_delegation, "photo": self.photo},
        }


def _thumbnail(key: str | None) -> str | None:
    """The person's thumbnail inline, so the gate needs no access to the photo files."""
    if not key:
        return None
    try:
        with open(storage.path_of(key), "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    kind = storage.sniff(data)
    mime = kind[0] if kind else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def scan(actor: Actor, token: str | None, gate: str | None = None) -> ScanOutcome:
    """Check a scanned code and log the scan (one SELECT and one INSERT)."""
    today = today_shanghai()
    claim = read_token(token)
    outcome = ScanOutcome(SR.forged, today)
    logged_badge_id = None
    if claim is not None:
        edition = current_edition()
        PR = m.PersonRegistration
        row = db.session.execute(
            sa.select(m.Badge, PR, m.Person.thumb_key)
            .join(m.Person, m.Person.id == m.Badge.person_id)
            .outerjoin(PR, sa.and_(PR.person_id == m.Badge.person_id,
                                   PR.edition_id == edition.id))
            .where(m.Badge.id == claim.badge_id)).one_or_none()
        badge, registration, thumb_key = row if row is not None else (None, None, None)
        logged_badge_id = badge.id if badge is not None else None
        # A reprint gave the badge a new nonce: the old printed code names no badge any more.
        if badge is None or not claim.names(badge.token_nonce):
            outcome.result = SR.unknown
        else:
            outcome.badge = badge
            outcome.photo = _thumbnail(thumb_key)
            if registration is not None:
                outcome.entry_dates = edition.mask_to_days(registration.entry_days)
            outcome.result = _judge(badge, registration, today, outcome.entry_dates)
    entry = m.GateScan(badge_id=logged_badge_id, result=outcome.result, scanned_at=now(),
                       scanned_by_id=actor.user_id, gate=(gate or "").strip()[:50] or None)
    db.session.add(entry)
    db.session.commit()
    outcome.scan_id = entry.id
    return outcome


def _judge(badge: m.Badge, registration: m.PersonRegistration | None, today: date,
           entry_dates: list[date]) -> m.ScanResult:
    if not badge.active:
        return SR.deactivated
    if registration is not None and registration.status in GONE:
        return SR.cancelled
    # The badge must be the one issued (or re-activated) for this edition's registration.
    if registration is None or registration.status is not PS.badge_issued \
            or registration.badge_id != badge.id:
        return SR.unknown
    if today not in entry_dates:
        return SR.not_today
    return SR.valid


# ---- offline gates ----------------------------------------------------------------------------

# A sync's cursor lies this far before the moment it was read, so a change committed by a
# transaction still open then is sent again next time rather than missed (gates apply the same
# change twice harmlessly).
SYNC_OVERLAP = timedelta(minutes=5)


def gate_sync(since: datetime | None) -> dict:
    """What an offline gate needs to judge codes alone, as JSON: everything when `since` is
    None, else the badges changed since then (the deactivated and cancelled lists are always
    whole: short, and a badge may leave them). Four queries, whatever the count."""
    edition = current_edition()
    synced_at = now()
    PR, B = m.PersonRegistration, m.Badge
    issued = (sa.select(B.id, B.number, B.token_nonce, PR.entry_days)
              .join(PR, PR.badge_id == B.id)
              .where(PR.edition_id == edition.id, PR.status == PS.badge_issued)
              .order_by(B.id))
    if since is not None:
        issued = issued.where(sa.or_(PR.updated_at > since, B.changed_at > since))
    cancelled = (sa.select(B.id).join(PR, PR.person_id == B.person_id)
                 .where(PR.edition_id == edition.id, PR.status.in_(GONE), B.active.is_(True))
                 .order_by(B.id))
    return {
        "full": since is None,
        "synced_at": synced_at.isoformat(),
        "next_since": (synced_at - SYNC_OVERLAP).isoformat(),
        "edition": {"number": edition.number, "start": edition.start_date.isoformat(),
                    "end": edition.end_date.isoformat()},
        "keys": published_keys(),
        "deactivated": list(db.session.scalars(
            sa.select(B.id).where(B.active.is_(False)).order_by(B.id))),
        "cancelled": list(db.session.scalars(cancelled)),
        # [badge id, nonce tag (hex, as in the code), entry-day mask, badge number]
        "badges": [[row.id, row.token_nonce[:2 * NONCE_TAG_BYTES], row.entry_days, row.number]
                   for row in db.session.execute(issued)],
    }


@dataclass(frozen=True)
class OfflineScan:
    """One scan as the offline gate logged it."""

    scan_id: uuid.UUID
    token: str
    result: m.ScanResult
    scanned_at: datetime
    gate: str | None = None


def record_offline_scans(actor: Actor, scans: list[OfflineScan]) -> dict:
    """Log uploaded scans once each (a scan id already logged is skipped, so an upload cut
    short can be sent again) with one audit row per new scan. The verdict is the gate's; the
    badge is the one a genuine code names (None for a forged code)."""
    claims = {scan.scan_id: read_token(scan.token) for scan in scans}
    named = {claim.badge_id for claim in claims.values() if claim is not None}
    known = set(db.session.scalars(sa.select(m.Badge.id).where(m.Badge.id.in_(named)))) \
        if named else set()
    rows = {}
    for scan in scans:
        claim = claims[scan.scan_id]
        rows[scan.scan_id] = {
            "client_scan_id": str(scan.scan_id), "offline": True, "result": scan.result,
            "badge_id": claim.badge_id if claim is not None and claim.badge_id in known
            else None, "scanned_at": scan.scanned_at, "scanned_by_id": actor.user_id,
            "gate": (scan.gate or "").strip()[:50] or None}
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    insert = dialect.insert(m.GateScan)
    new_ids = list(db.session.scalars(
        insert.values(list(rows.values())).on_conflict_do_nothing(
            index_elements=["client_scan_id"]).returning(m.GateScan.id))) if rows else []
    record_many(actor, "gate_scan", [(scan_id, None) for scan_id in new_ids], "upload",
                detail={"offline": True})
    db.session.commit()
    return {"received": len(rows), "logged": len(new_ids),
            "already_logged": len(rows) - len(new_ids)}
