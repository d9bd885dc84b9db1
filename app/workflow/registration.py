"""How a unit gets its account and its registration for the current edition: as a new unit, or
as a returning unit that proved who it is. Registering afresh after every check failed is a
claim the delegation decides (app/workflow/claims.py)."""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.security import check_password_hash, generate_password_hash

from app import models as m
from app.clock import now
from app.codes import code_store
from app.extensions import db
from app.formatting import mask_email, mask_mobile
from app.scoping.actor import SYSTEM, UNIT, Actor
from app.validation import ValidationFailed, normalise_mobile, normalise_uscc
from app.workflow.audit import record
from app.workflow.claim_rules import CLAIM_MOVES, claim_label, decision_notices
from app.workflow.editions import current_edition, require_delegation_window
from app.workflow.errors import WorkflowError
from app.workflow.notices import Notice, create_notices, enqueue_sends, render
from app.workflow.numbers import reserve
from app.workflow.transitions import move

CODE_TTL = 300          # a code lives five minutes
CODE_TRIES = 5          # and may be tried five times
RESEND_AFTER = 60       # and re-sent at most once a minute
TRIES_TTL = 3600        # failed tries are remembered for an hour
METHODS = ("password", "sms", "email")


@dataclass
class NewUnit:
    region: m.Region
    category: m.UnitCategory
    name: str
    uscc: str | None
    delegation_id: int | None
    sub_delegation_id: int | None
    password: str
    mobile: str
    email: str
    referral_code: str | None = None
    name_en: str | None = None


def normalise_login(value: str | None) -> str:
    """Logins are USCCs (or generated overseas logins): compare them without case or spaces."""
    return re.sub(r"[\s-]", "", value or "").upper()


def check_password_strength(password: str) -> None:
    if len(password or "") < 8 or not re.search(r"[A-Za-z]", password) \
            or not re.search(r"\d", password):
        raise WorkflowError(_l("The password needs at least 8 characters, with letters and "
                               "digits."), 400)


def _delegations(data: NewUnit) -> tuple[m.Delegation | None, m.Delegation | None]:
    delegation = db.session.get(m.Delegation, data.delegation_id) if data.delegation_id \
        else None
    sub = db.session.get(m.Delegation, data.sub_delegation_id) if data.sub_delegation_id \
        else None
    if data.delegation_id and delegation is None:
        raise WorkflowError(_l("Choose a trading delegation from the list."), 400)
    if data.sub_delegation_id and sub is None:
        raise WorkflowError(_l("The sub-delegation does not belong to that delegation."), 400)
    if data.region is m.Region.domestic and delegation is None:
        raise WorkflowError(_l("A domestic unit must join a trading delegation."), 400)
    if delegation is not None and (delegation.parent_id is not None or not delegation.active
                                   or delegation.region is not data.region):
        raise WorkflowError(_l("Choose a trading delegation from the list."), 400)
    if sub is not None and (delegation is None or sub.parent_id != delegation.id
                            or not sub.active):
        raise WorkflowError(_l("The sub-delegation does not belong to that delegation."), 400)
    return delegation, sub


def _referral(code: str | None) -> m.ReferralCode | None:
    code = normalise_login(code)
    if not code:
        return None
    referral = db.session.scalars(sa.select(m.ReferralCode).where(
        m.ReferralCode.code == code, m.ReferralCode.active.is_(True))).one_or_none()
    if referral is None:
        raise WorkflowError(_l("Unknown referral code. Check it with the partner who gave it "
                               "to you, or leave it empty."), 400)
    return referral


def _contact(data: NewUnit) -> tuple[str, str]:
    try:
        mobile = normalise_mobile(data.mobile, "CN" if data.region is m.Region.domestic
                                  else "GB")
    except ValidationFailed as exc:
        raise WorkflowError(exc.message, 400) from None
    email = (data.email or "").strip()
    if not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", email):
        raise WorkflowError(_l("Enter a valid e-mail address."), 400)
    return mobile, email


def unit_user(unit: m.Unit) -> m.User | None:
    return db.session.scalars(sa.select(m.User).where(m.User.unit_id == unit.id)).first()


def _registration_in(edition: m.Edition, unit: m.Unit) -> m.UnitRegistration | None:
    return db.session.scalars(sa.select(m.UnitRegistration).where(
        m.UnitRegistration.edition_id == edition.id,
        m.UnitRegistration.unit_id == unit.id)).one_or_none()


@dataclass
class CheckedUnit:
    """A new unit's form, checked: what register_unit and claim_account both build on."""

    edition: m.Edition
    delegation: m.Delegation | None
    sub_delegation: m.Delegation | None
    referral: m.ReferralCode | None
    mobile: str
    email: str
    uscc: str | None


def check_new_unit(data: NewUnit) -> CheckedUnit:
    """Every rule of the new-unit form, refused in the user's language (nothing written)."""
    edition = current_edition()
    if not (data.name or "").strip():
        raise WorkflowError(_l("Enter the unit's name."), 400)
    if data.category not in m.CATEGORIES_BY_REGION[data.region]:
        raise WorkflowError(_l("This unit category does not exist for that region."), 400)
    check_password_strength(data.password)
    delegation, sub = _delegations(data)
    require_delegation_window(edition, delegation.id if delegation else None)
    referral = _referral(data.referral_code)
    mobile, email = _contact(data)
    uscc = None
    if data.region is m.Region.domestic:
        try:
            uscc = normalise_uscc(data.uscc)
        except ValidationFailed as exc:
            raise WorkflowError(exc.message, 400) from None
    return CheckedUnit(edition, delegation, sub, referral, mobile, email, uscc)


def register_unit(data: NewUnit) -> m.User:
    """Create the unit, its login and its draft registration for the current edition.

    A USCC already known from an earlier edition must prove it is the same unit (returning
    unit); if every check fails it may only ask to register afresh (claims.claim_account).
    """
    checked = check_new_unit(data)
    edition, uscc = checked.edition, checked.uscc
    unit = db.session.scalars(sa.select(m.Unit).where(m.Unit.uscc == uscc)).one_or_none() \
        if uscc else None
    if unit is not None:
        if _registration_in(edition, unit) is not None:
            raise WorkflowError(_l("This unit has already registered for this edition. Log in "
                                   "with its credit code."), 409)
        raise WorkflowError(_l("This credit code registered for an earlier edition. Choose "
                               "\"I registered for an earlier edition\" to carry your data "
                               "forward."), 409)
    if uscc is None:
        number = reserve("overseas_login", 1)[0]
        login = f"OS{edition.start_date.year}{number:06d}"
    else:
        login = uscc
    name = data.name.strip()
    unit = m.Unit(login=login, uscc=uscc, name=name, name_en=(data.name_en or "").strip() or None,
                  region=data.region, category=data.category, mobile=checked.mobile,
                  email=checked.email,
                  language="en" if data.region is m.Region.overseas else "zh")
    db.session.add(unit)
    db.session.flush()
    # Not sm.add_user: it commits on its own, and the account must be created in the same
    # transaction as the unit and its registration.
    user = m.User(username=login, first_name=name[:64], last_name="",
                  email=f"{login.lower()}@units.ciie.invalid", active=True,
                  password=hash_password(data.password), unit_id=unit.id)
    user.roles = [current_app.appbuilder.sm.find_role(UNIT)]
    db.session.add(user)
    db.session.flush()
    actor = Actor(user_id=user.id, name=user.username, roles=frozenset({UNIT}), unit_id=unit.id)
    record(actor, "unit", unit.id, "register")
    open_registration(actor, unit, checked.delegation, checked.sub_delegation, checked.referral,
                      checked.mobile, checked.email, history_hidden=False)
    db.session.commit()
    return user


def open_registration(actor: Actor, unit: m.Unit, delegation: m.Delegation | None,
                      sub: m.Delegation | None, referral: m.ReferralCode | None, mobile: str,
                      email: str, history_hidden: bool) -> m.UnitRegistration:
    """The unit's draft registration for the current edition, audited (caller commits)."""
    registration = m.UnitRegistration(
        edition_id=current_edition().id, unit_id=unit.id, status=m.UnitStatus.draft,
        delegation_id=delegation.id if delegation else None,
        sub_delegation_id=sub.id if sub else None,
        referral_code_id=referral.id if referral else None, contact_mobile=mobile,
        contact_email=email, history_hidden=history_hidden)
    db.session.add(registration)
    db.session.flush()
    record(actor, "unit_registration", registration.id, "create", to_state=m.UnitStatus.draft,
           detail={"referral_code": referral.code if referral else None})
    return registration


def hash_password(password: str) -> str:
    return generate_password_hash(password,
                                  method=current_app.config["FAB_PASSWORD_HASH_METHOD"])


# --------------------------------------------------------------------------------------------
# Returning units: password, SMS code or e-mail code
# --------------------------------------------------------------------------------------------

def returning_unit(login: str) -> m.Unit:
    """A unit that registered for an earlier edition and not yet for this one."""
    edition = current_edition()
    unit = db.session.scalars(sa.select(m.Unit).where(
        m.Unit.login == normalise_login(login))).one_or_none()
    if unit is None or not db.session.scalar(sa.select(sa.func.count()).select_from(
            m.UnitRegistration).join(m.Edition).where(
            m.UnitRegistration.unit_id == unit.id, m.Edition.number < edition.number)):
        raise WorkflowError(_l("No unit with this credit code registered for an earlier "
                               "edition."), 404)
    if _registration_in(edition, unit) is not None:
        raise WorkflowError(_l("This unit has already registered for this edition. Log in "
                               "with its credit code."), 409)
    return unit


def _key(kind: str, method: str, unit_id: int) -> str:
    return f"ciie:verify:{kind}:{method}:{unit_id}"


def _digest(code: str) -> str:
    return hmac.new(current_app.config["SECRET_KEY"].encode(), code.encode(),
                    hashlib.sha256).hexdigest()


def _fail(method: str, unit: m.Unit) -> int:
    """Count a failed try; returns the tries left for this method."""
    tries = code_store().incr(_key("tries", method, unit.id), TRIES_TTL)
    return max(CODE_TRIES - tries, 0)


def method_exhausted(method: str, unit: m.Unit) -> bool:
    return int(code_store().get(_key("tries", method, unit.id)) or 0) >= CODE_TRIES


def send_code(method: str, login: str) -> str:
    """Send a 6-digit code to the mobile or e-mail on file; returns where it went (masked)."""
    unit = returning_unit(login)
    store = code_store()
    if method_exhausted(method, unit):
        raise WorkflowError(_l("Too many wrong codes. Try another way."), 429)
    destination = unit.mobile if method == "sms" else unit.email
    if not destination:
        raise WorkflowError(_l("There is no mobile number or e-mail address on file for this "
                               "way. Try another way."), 409)
    if not store.claim(_key("resend", method, unit.id), RESEND_AFTER):
        raise WorkflowError(_l("A code was sent less than a minute ago. Please wait before "
                               "asking again."), 429)
    code = f"{secrets.randbelow(10**6):06d}"
    store.put(_key("code", method, unit.id), _digest(code), CODE_TTL)
    channel = m.NotificationChannel.sms if method == "sms" else m.NotificationChannel.email
    subject, redacted = render(unit.language, lambda: verification_text("******"))
    # The row keeps the code redacted, in its text and its SMS parameters alike.
    [notification_id] = create_notices([Notice(
        f"verify:{unit.id}:{method}:{secrets.token_hex(6)}", channel, unit.id, destination,
        unit.language, subject, redacted,
        sms_template="verification_code" if method == "sms" else None,
        sms_params={"code": "******"} if method == "sms" else None)])
    db.session.commit()
    from app.extensions import queue
    from app.queue import QueueUnavailable

    # The code travels only in the job's arguments; the log keeps the redacted text. So it
    # cannot wait in the outbox: without Redis nothing is left behind and the unit tries again.
    try:
        queue.enqueue("app.jobs.send_verification_code", notification_id, code,
                      job_id=f"verify-{notification_id}", result_ttl=0, failure_ttl=CODE_TTL)
    except QueueUnavailable:
        db.session.execute(sa.delete(m.Notification).where(m.Notification.id == notification_id))
        db.session.commit()
        for kind in ("code", "resend"):
            store.delete(_key(kind, method, unit.id))
        raise
    return mask_mobile(destination) if method == "sms" else mask_email(destination)


def verification_text(code: str) -> tuple[str, str]:
    return (_("Your CIIE verification code"),
            _("Your CIIE verification code is %(code)s. It is valid for 5 minutes.", code=code))


def check_code(method: str, login: str, code: str) -> m.Unit:
    unit = returning_unit(login)
    store = code_store()
    if method_exhausted(method, unit):
        raise WorkflowError(_l("Too many wrong codes. Try another way."), 429)
    stored = store.get(_key("code", method, unit.id))
    if stored is None:
        raise WorkflowError(_l("The code has expired or was not sent. Ask for a new one."), 400)
    if not hmac.compare_digest(stored, _digest((code or "").strip())):
        left = _fail(method, unit)
        if left == 0:
            store.delete(_key("code", method, unit.id))
            raise WorkflowError(_l("Too many wrong codes. Try another way."), 429)
        raise WorkflowError(_l("Wrong code. %(left)d tries left.", left=left), 400)
    store.delete(_key("code", method, unit.id))
    return unit


def check_password(login: str, password: str) -> m.Unit:
    unit = returning_unit(login)
    if method_exhausted("password", unit):
        raise WorkflowError(_l("Too many wrong passwords. Try another way."), 429)
    user = unit_user(unit)
    if user is None or not user.password or not check_password_hash(user.password,
                                                                     password or ""):
        left = _fail("password", unit)
        if left == 0:
            raise WorkflowError(_l("Too many wrong passwords. Try another way."), 429)
        raise WorkflowError(_l("Wrong password. %(left)d tries left.", left=left), 400)
    return unit


def all_methods_failed(login: str) -> bool:
    try:
        unit = returning_unit(login)
    except WorkflowError:
        return False
    return all(method_exhausted(method, unit) for method in METHODS)


def carry_forward(unit: m.Unit, method: str) -> m.User:
    """Open the current edition's registration pre-filled from the unit's latest one."""
    edition = current_edition()
    previous = db.session.scalars(sa.select(m.UnitRegistration).join(m.Edition).where(
        m.UnitRegistration.unit_id == unit.id, m.Edition.number < edition.number)
        .order_by(m.Edition.number.desc()).limit(1)).one()
    require_delegation_window(edition, previous.delegation_id)
    registration = m.UnitRegistration(
        edition_id=edition.id, unit_id=unit.id, status=m.UnitStatus.draft,
        delegation_id=previous.delegation_id, sub_delegation_id=previous.sub_delegation_id,
        referral_code_id=previous.referral_code_id, previous_registration_id=previous.id,
        is_returning=True, contact_name=previous.contact_name,
        contact_title=previous.contact_title, contact_mobile=previous.contact_mobile,
        contact_email=previous.contact_email,
        purchase_intentions=previous.purchase_intentions, reason=previous.reason)
    # The earlier choices the form still offers (an area or zone may have been retired).
    registration.zones = list(db.session.scalars(m.Zone.choosable().where(m.Zone.id.in_(
        [z.id for z in previous.zones]))))
    db.session.add(registration)
    db.session.flush()
    user = unit_user(unit)
    actor = Actor(user_id=user.id, name=user.username, roles=frozenset({UNIT}), unit_id=unit.id)
    record(actor, "unit_registration", registration.id, "carry_forward",
           to_state=m.UnitStatus.draft, detail={"from": previous.id, "verified_by": method})
    clear_codes(unit.id)
    notice_ids = withdraw_claims_of(actor, unit.id)
    db.session.commit()
    enqueue_sends(notice_ids)
    return user


def clear_codes(unit_id: int) -> None:
    """Forget the unit's one-time codes and failed tries (it proved who it is)."""
    for kind in ("tries", "code", "resend"):
        for each in METHODS:
            code_store().delete(_key(kind, each, unit_id))


def withdraw_claims_of(actor: Actor, unit_id: int) -> list[int]:
    """The unit proved its identity: a claim to register it afresh is moot, and its claimant is
    told. Returns the notices to send after the caller's commit."""
    AC = m.AccountClaim
    step = CLAIM_MOVES["withdraw"]
    # The unit may not see the claims made on its account: the system withdraws them.
    rows = move(actor, AC, sa.select(AC.id).where(AC.unit_id == unit_id,
                                                  AC.status.in_(step.from_)),
                step, label=claim_label(), reason="identity proven",
                values={"decided_at": now()}, commit=False, scope_actor=SYSTEM).done
    if not rows:
        return []
    claims = db.session.scalars(sa.select(AC).where(AC.id.in_(rows))).all()
    return create_notices([n for claim in claims for n in decision_notices(claim)])
