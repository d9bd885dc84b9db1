"""The audit trail: who did what to which record, when, from which state to which, and why;
and how it reads: every record type and action the code writes, labelled (a test collects the
codes from the source and fails on an unlabelled one), and the records' names for a page."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import sqlalchemy as sa
from flask_appbuilder.security.sqla.models import Role
from flask_babel import lazy_gettext as _l
from sqlalchemy.dialects import postgresql

from app import models as m
from app.clock import now
from app.extensions import db
from app.i18n import pick
from app.input_checks import check_lengths
from app.labels import ROLE_LABELS
from app.scoping.actor import Actor
from app.scoping.rules import scoped


def _state(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


def audit_values(actor: Actor, record_type: str, record_id: int, action: str,
                 from_state: Any = None, to_state: Any = None, reason: str | None = None,
                 detail: dict | None = None, at: Any = None) -> dict[str, Any]:
    """One audit row's column values, for a Core INSERT (a bulk one, or one inside a flush)."""
    return {"at": at or now(), "actor_id": actor.user_id, "actor_name": actor.name,
            "record_type": record_type, "record_id": record_id, "action": action,
            "from_state": _state(from_state), "to_state": _state(to_state), "reason": reason,
            "detail": detail}


def record(actor: Actor, record_type: str, record_id: int, action: str,
           from_state: Any = None, to_state: Any = None, reason: str | None = None,
           detail: dict | None = None) -> None:
    """Add one audit row to the session (the caller's transaction commits it)."""
    db.session.add(m.AuditEvent(**audit_values(actor, record_type, record_id, action,
                                               from_state, to_state, reason, detail)))


def record_many(actor: Actor, record_type: str, rows: Iterable[tuple[int, Any]], action: str,
                to_state: Any = None, reason: str | None = None,
                detail: dict | None = None) -> int:
    """One audit row per record, written in a single INSERT (rows: (record_id, from_state))."""
    # A bulk INSERT passes no flush: a reason longer than its column is refused here.
    check_lengths(m.AuditEvent, {"reason": reason})
    at = now()
    rows = list(rows)
    if not rows:
        return 0
    if db.session.get_bind().dialect.name != "postgresql":
        db.session.execute(sa.insert(m.AuditEvent), [
            audit_values(actor, record_type, rid, action, from_state, to_state, reason, detail,
                         at=at) for rid, from_state in rows])
        return len(rows)
    # On PostgreSQL the rows travel as two arrays (ids, from-states) and the values shared by
    # every row once: no row of parameters per record (a lock of 5,000 persons).
    columns = m.AuditEvent.__table__.c
    source = sa.func.unnest(
        sa.bindparam("audit_ids", [rid for rid, _from in rows],
                     type_=postgresql.ARRAY(sa.Integer)),
        sa.bindparam("audit_from_states", [_state(from_state) for _rid, from_state in rows],
                     type_=postgresql.ARRAY(sa.Text)),
    ).table_valued("record_id", "from_state").render_derived("audit_rows")
    shared = audit_values(actor, record_type, 0, action, None, to_state, reason, detail, at=at)
    names = list(shared)
    db.session.execute(sa.insert(m.AuditEvent).from_select(names, sa.select(*[
        source.c[name] if name in ("record_id", "from_state")
        else sa.literal(shared[name], columns[name].type) for name in names])))
    return len(rows)


# ---- how the trail reads -------------------------------------------------------------------


@dataclass(frozen=True)
class RecordKind:
    """A record type of the trail: its label, its model, and the columns naming a row (two
    columns are its zh and en names; joins reach a name kept on another table)."""
    label: Any
    model: type | None = None
    name: tuple = ()
    joins: tuple = ()
    # How a name is shown, where the stored one is a code (a role's "sub_delegation").
    shown: Callable[[str], str] | None = None


def _kinds() -> dict[str, RecordKind]:
    PR, UR = m.PersonRegistration, m.UnitRegistration
    kinds = {
        "account_claim": RecordKind(_l("Request to register afresh"), m.AccountClaim,
                                    (m.AccountClaim.name,)),
        "address": RecordKind(_l("Delivery address"), m.Address, (m.Address.recipient,)),
        "audit_event": RecordKind(_l("Audit entry"), m.AuditEvent),
        "background_task": RecordKind(_l("Background task"), m.BackgroundTask),
        "badge": RecordKind(_l("Badge"), m.Badge, (m.Badge.number,)),
        "bank_statement_import": RecordKind(_l("Bank statement import"),
                                            m.BankStatementImport,
                                            (m.BankStatementImport.file_name,)),
        "bank_statement_line": RecordKind(_l("Bank statement line"), m.BankStatementLine,
                                          (m.BankStatementLine.reference,)),
        "bank_statement_profile": RecordKind(_l("Bank statement layout"),
                                             m.BankStatementProfile,
                                             (m.BankStatementProfile.name_zh,
                                              m.BankStatementProfile.name_en)),
        "delegation": RecordKind(_l("Delegation"), m.Delegation,
                                 (m.Delegation.name_zh, m.Delegation.name_en)),
        "delegation_extension": RecordKind(
            _l("Deadline extension"), m.DelegationExtension,
            (m.Delegation.name_zh, m.Delegation.name_en),
            ((m.Delegation, m.Delegation.id == m.DelegationExtension.delegation_id),)),
        "edition": RecordKind(_l("Edition"), m.Edition, (m.Edition.number,)),
        "event": RecordKind(_l("Supporting event"), m.Event, (m.Event.title_zh, m.Event.title_en)),
        "event_application": RecordKind(
            _l("Event application"), m.EventApplication, (PR.person_name,),
            ((PR, PR.id == m.EventApplication.person_registration_id),)),
        "gate_scan": RecordKind(_l("Gate scan"), m.GateScan),
        "invoice": RecordKind(_l("Invoice"), m.Invoice, (m.Invoice.number,)),
        "notification": RecordKind(_l("Notification"), m.Notification,
                                   (m.Notification.subject,)),
        "order": RecordKind(_l("Badge-fee order"), m.Order, (m.Order.number,)),
        "organiser": RecordKind(_l("Event organiser"), m.Organiser,
                                (m.Organiser.name_zh, m.Organiser.name_en)),
        "overpayment": RecordKind(_l("Overpayment"), m.Overpayment, (m.Overpayment.number,)),
        "payment": RecordKind(_l("Payment record"), m.Payment, (m.Payment.number,)),
        "person": RecordKind(_l("Person"), m.Person, (m.Person.name,)),
        "person_registration": RecordKind(_l("Person registration"), PR, (PR.person_name,)),
        # `flask ciie rotate-keys` (app.pii): no row of its own, the counts in the detail.
        "pii_keys": RecordKind(_l("Personal data keys")),
        "referral_code": RecordKind(_l("Referral code"), m.ReferralCode,
                                    (m.ReferralCode.code,)),
        "refund": RecordKind(_l("Refund"), m.Refund, (m.Refund.number,)),
        "role": RecordKind(_l("Role"), Role, (Role.name,),
                           shown=lambda code: str(ROLE_LABELS.get(code, code))),
        "shipment": RecordKind(_l("Parcel"), m.Shipment, (m.Shipment.tracking_no,)),
        "unit": RecordKind(_l("Unit"), m.Unit, (m.Unit.name,)),
        "unit_document": RecordKind(_l("Qualification document"), m.UnitDocument,
                                    (m.UnitDocument.original_name,)),
        "unit_registration": RecordKind(_l("Unit registration"), UR, (UR.unit_name,)),
        "user": RecordKind(_l("User"), m.User, (m.User.username,)),
        "zone": RecordKind(_l("Zone"), m.Zone, (m.Zone.name_zh, m.Zone.name_en)),
    }
    # Orders are audited under the name the code gave them and under their table's name.
    kinds["badge_order"] = kinds["order"]
    return kinds


RECORD_KINDS: dict[str, RecordKind] = _kinds()

ACTION_LABELS: dict[str, Any] = {
    "accept": _l("Accepted"),
    "accept_join": _l("Joining accepted"),
    "account_handed_over": _l("Account handed over"),
    "apply": _l("Applied"),
    "approve": _l("Approved"),
    "bank_line": _l("Bank statement line found"),
    "cancel": _l("Cancelled"),
    "carry_forward": _l("Carried forward"),
    "change_entry_dates": _l("Entry dates changed"),
    "claim_afresh": _l("Asked to register afresh"),
    "close": _l("Closed"),
    "confirm": _l("Confirmed"),
    "create": _l("Created"),
    "deactivate": _l("Deactivated"),
    "decline": _l("Declined"),
    "delete": _l("Deleted"),
    "deliver": _l("Delivered"),
    "delivered": _l("Delivered"),
    "done": _l("Completed"),
    "execute": _l("Executed"),
    "export": _l("Exported"),
    "failed": _l("Failed"),
    "import": _l("Imported"),
    "issue": _l("Issued"),
    "issue_badge": _l("Badge issued"),
    "join": _l("Joined a unit"),
    "keep": _l("Kept: reversal refused"),
    "lock": _l("Locked"),
    "login": _l("Logged in"),
    "login_failed": _l("Login failed"),
    "login_throttled": _l("Login throttled"),
    "logout": _l("Logged out"),
    "mail": _l("Mailed"),
    "match": _l("Matched"),
    "match_by_hand": _l("Matched by hand"),
    "notification_refused": _l("Provider notification refused"),
    "notified": _l("Confirmed by the provider"),
    "order": _l("Ordered"),
    "order_cancelled": _l("Order cancelled"),
    "overpaid": _l("Found overpaid"),
    "pack": _l("Packed"),
    "paid": _l("Paid"),
    "password_change": _l("Password changed"),
    "pdf": _l("PDF made"),
    "permissions_change": _l("Permissions changed"),
    "pii_view": _l("Full number displayed"),
    "produce": _l("Produced"),
    "provider_pending": _l("Waiting for the provider"),
    "publish": _l("Published"),
    "reactivate": _l("Reactivated"),
    "receive": _l("Received"),
    "refund": _l("Refund sent"),
    "refund_done": _l("Refunded"),
    "refund_failed": _l("Refund failed"),
    "refunded": _l("Refunded"),
    "refunded_by_transfer": _l("Refunded by bank transfer"),
    "refuse_join": _l("Joining refused"),
    "regenerate": _l("Made again"),
    "register": _l("Registered"),
    "reissue_code": _l("Code reissued"),
    "reject": _l("Rejected"),
    "request": _l("Requested"),
    "request_reprint": _l("Reprint requested"),
    "request_void": _l("Voiding requested"),
    "resend": _l("Sent again"),
    "return": _l("Returned"),
    "reversal": _l("Reversal requested"),
    "reverse": _l("Reversed"),
    "review_failed": _l("Failed security review"),
    "review_passed": _l("Passed security review"),
    "roles_change": _l("Roles changed"),
    "rotate": _l("Sealed again with the current key"),
    "run_again": _l("Run again"),
    "set_default": _l("Made the default"),
    "ship": _l("Shipped"),
    "signup": _l("Signed up"),
    "start": _l("Started"),
    "statement_line": _l("Paid by bank statement line"),
    "statement_match": _l("Matched to a bank statement line"),
    "submit": _l("Submitted"),
    "submit_transfer": _l("Bank transfer declared"),
    "superseded": _l("Superseded"),
    "tag": _l("Tagged"),
    "undelivered": _l("Not delivered"),
    "update": _l("Changed"),
    "upload": _l("Uploaded"),
    "void": _l("Voided"),
    "withdraw": _l("Withdrawn"),
}

# States that are not a status of their record (a badge is active or not beside its status).
OTHER_STATES: dict[str, Any] = {"active": _l("Active"), "deactivated": _l("Deactivated")}

# Actors without an account.
ACTOR_LABELS: dict[str, Any] = {"system": _l("System"), "anonymous": _l("Anonymous")}


def record_label(record_type: str) -> str:
    kind = RECORD_KINDS.get(record_type)
    return str(kind.label) if kind is not None else record_type


def action_label(action: str) -> str:
    label = ACTION_LABELS.get(action)
    return str(label) if label is not None else action


def state_label(record_type: str, state: str | None) -> str:
    """A from- or to-state in the reader's language: the label of the record's status."""
    if state is None:
        return ""
    kind = RECORD_KINDS.get(record_type)
    column = sa.inspect(kind.model).columns.get("status") if kind and kind.model else None
    enum_class = getattr(getattr(column, "type", None), "enum_class", None)
    if enum_class is not None and state in enum_class.__members__:
        return str(enum_class(state).label)
    label = OTHER_STATES.get(state)
    return str(label) if label is not None else state


def record_codes_for(record_type: str) -> list[str]:
    """The codes a record type is written under (an order under two)."""
    kind = RECORD_KINDS.get(record_type)
    return sorted(code for code, k in RECORD_KINDS.items() if k is kind) if kind else [
        record_type]


def record_names(events: Iterable[m.AuditEvent]) -> dict[tuple[str, int], str]:
    """{(record type, id): display name} for the events of a page: one query per model."""
    wanted: dict[type, set[int]] = defaultdict(set)
    kind_of: dict[type, RecordKind] = {}
    for event in events:
        kind = RECORD_KINDS.get(event.record_type)
        if kind is not None and kind.name:
            wanted[kind.model].add(event.record_id)
            kind_of[kind.model] = kind
    names: dict[tuple[type, int], str] = {}
    for model, ids in wanted.items():
        kind = kind_of[model]
        query = sa.select(model.id, *kind.name).select_from(model)
        for target, on in kind.joins:
            query = query.join(target, on)
        rows = db.session.execute(scoped(query.where(model.id.in_(sorted(ids))), model)).all()
        for row in rows:
            parts = [None if v is None else str(v) for v in row[1:]]
            name = pick(*parts) if len(parts) == 2 else (parts[0] or "")
            names[model, row[0]] = kind.shown(name) if kind.shown else name
    return {(event.record_type, event.record_id): names[kind.model, event.record_id]
            for event in events
            if (kind := RECORD_KINDS.get(event.record_type)) is not None
            and (kind.model, event.record_id) in names}


def actor_names(events: Iterable[m.AuditEvent]) -> dict[int, str]:
    """{user id: the name to show} for the actors of a page, in one query: the organisation
    a unit, delegation or organiser account acts for, else the person's name."""
    ids = sorted({e.actor_id for e in events if e.actor_id is not None})
    if not ids:
        return {}
    U = m.User
    rows = db.session.execute(scoped(
        sa.select(U.id, U.first_name, U.last_name, m.Unit.name, m.Delegation.name_zh,
                  m.Delegation.name_en, m.Organiser.name_zh, m.Organiser.name_en)
        .outerjoin(m.Unit, m.Unit.id == U.unit_id)
        .outerjoin(m.Delegation, m.Delegation.id == U.delegation_id)
        .outerjoin(m.Organiser, m.Organiser.id == U.organiser_id)
        .where(U.id.in_(ids)), U)).all()
    names = {}
    for uid, first, last, unit, d_zh, d_en, o_zh, o_en in rows:
        joiner = "" if _cjk(f"{first}{last}") else " "
        person = joiner.join(p.strip() for p in (first, last) if p and p.strip())
        names[uid] = unit or pick(d_zh, d_en) or pick(o_zh, o_en) or person
    return names


def _cjk(text: str) -> bool:
    return any("\u3400" <= ch <= "\u9fff" for ch in text)
