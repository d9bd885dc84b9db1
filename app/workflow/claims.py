"""Registering afresh (须重新注册) as a claim on a known unit's account: nothing of the account
changes until the delegation the claimant chose has confirmed who is asking. The decision and
its reasons are in docs/account-claims.md."""
from __future__ import annotations

from typing import Iterable

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l

from app import models as m
from app.clock import now
from app.extensions import db
from app.formatting import mask_email, mask_mobile
from app.scoping.actor import ANONYMOUS, Actor
from app.workflow.audit import record
from app.workflow.claim_rules import (
    CLAIM_MOVES,
    claim_label,
    claim_received_notices,
    decision_notices,
    handed_over_notices,
)
from app.workflow.errors import BatchResult, WorkflowError
from app.workflow.notices import Notice, create_notices, enqueue_sends
from app.workflow.registration import (
    NewUnit,
    all_methods_failed,
    check_new_unit,
    clear_codes,
    hash_password,
    open_registration,
    returning_unit,
    unit_user,
)
from app.workflow.transitions import insert_guarded, move
from app.workflow.units import require_review_window

CS = m.ClaimStatus
AC = m.AccountClaim
def claim_account(data: NewUnit, address: str | None) -> m.AccountClaim:
    """Ask to register a returning unit afresh, once every check (password, SMS code, e-mail
    code) has failed. The account, its password and its contacts stay as they are; the contacts
    on file are told at once, so a real owner can object before the delegation decides."""
    checked = check_new_unit(data)
    if checked.uscc is None:
        raise WorkflowError(_l("Only a unit known from an earlier edition can register "
                               "afresh."), 400)
    try:
        unit = returning_unit(checked.uscc)
    except WorkflowError as exc:
        # An unknown code is the form's mistake here, not a missing page.
        raise WorkflowError(exc.message, 400 if exc.status_code == 404 else exc.status_code
                            ) from None
    if not all_methods_failed(unit.login):
        raise WorkflowError(_l("This credit code registered for an earlier edition. Choose "
                               "\"I registered for an earlier edition\" to carry your data "
                               "forward."), 409)
    if _pending_claim(unit.id) is not None:
        raise WorkflowError(_l("A request to register this unit afresh is already waiting "
                               "for its trading delegation."), 409)
    claim = AC(unit_id=unit.id, edition_id=checked.edition.id, status=CS.pending,
               name=data.name.strip(), name_en=(data.name_en or "").strip() or None,
               region=data.region, category=data.category,
               delegation_id=checked.delegation.id if checked.delegation else None,
               sub_delegation_id=checked.sub_delegation.id if checked.sub_delegation else None,
               referral_code_id=checked.referral.id if checked.referral else None,
               mobile=checked.mobile, email=checked.email,
               password_hash=hash_password(data.password),
               language="en" if data.region is m.Region.overseas else "zh")
    # Two claims at once: the partial unique index lets one wait.
    insert_guarded(claim, _l("A request to register this unit afresh is already waiting for "
                             "its trading delegation."))
    record(ANONYMOUS, "account_claim", claim.id, "create", to_state=CS.pending,
           detail={"unit": unit.id, "address": address, "delegation": claim.delegation_id})
    record(ANONYMOUS, "unit", unit.id, "claim_afresh", detail={"claim": claim.id,
                                                               "address": address})
    ids = create_notices(claim_received_notices(claim, unit))
    db.session.commit()
    enqueue_sends(ids)
    return claim


def _pending_claim(unit_id: int) -> m.AccountClaim | None:
    return db.session.scalars(sa.select(AC).where(AC.unit_id == unit_id,
                                                  AC.status == CS.pending)).first()


def approve_claims(actor: Actor, ids: Iterable[int] | sa.Select) -> BatchResult:
    """The delegation confirmed who is asking: hand the account over. The claimant's password
    and contacts replace the old ones, the user's sessions end, and the new registration hides
    the earlier editions. Refused when the unit meanwhile proved its identity and registered."""
    edition = require_review_window(actor)
    UR = m.UnitRegistration
    registered = sa.exists().where(UR.unit_id == AC.unit_id, UR.edition_id == edition.id)
    result = move(actor, AC, ids, CLAIM_MOVES["approve"], label=claim_label(),
                  checks=[(AC.edition_id == edition.id, _l("the request was made for another "
                                                           "edition")),
                          (~registered, _l("the unit has meanwhile proved its identity and "
                                           "registered"))],
                  values={"decided_at": now(), "decided_by_id": actor.user_id}, commit=False)
    notices: list[Notice] = []
    # Claims are a handful a day: each hand-over touches the user, the unit and a registration.
    for claim in db.session.scalars(sa.select(AC).where(AC.id.in_(result.done))):
        notices += _hand_over(actor, claim)
    ids_ = create_notices(notices)
    db.session.commit()
    enqueue_sends(ids_)
    return result


def _hand_over(actor: Actor, claim: m.AccountClaim) -> list[Notice]:
    unit = claim.unit
    user = unit_user(unit)
    old = {"mobile": unit.mobile, "email": unit.email, "language": unit.language}
    record(actor, "unit", unit.id, "account_handed_over", reason=f"claim #{claim.id}",
           detail={"claim": claim.id, "old_mobile": mask_mobile(unit.mobile),
                   "old_email": mask_email(unit.email)})
    # A new password ends every session and API token of the account (app.security_manager).
    user.password = claim.password_hash
    user.first_name = claim.name[:64]
    unit.name, unit.name_en = claim.name, claim.name_en
    unit.region, unit.category = claim.region, claim.category
    unit.mobile, unit.email, unit.language = claim.mobile, claim.email, claim.language
    unit_actor = Actor(user_id=user.id, name=user.username, roles=frozenset({"unit"}),
                       unit_id=unit.id)
    open_registration(unit_actor, unit, claim.delegation, claim.sub_delegation,
                      claim.referral_code, claim.mobile, claim.email, history_hidden=True)
    clear_codes(unit.id)
    return handed_over_notices(claim, unit, old)


def reject_claims(actor: Actor, ids: Iterable[int] | sa.Select, reason: str | None
                  ) -> BatchResult:
    """The delegation could not confirm who is asking: nothing changes; the claimant is told
    why."""
    reason = (reason or "").strip()
    if not reason:
        raise WorkflowError(_l("Give a reason; the unit will see it."), 400)
    require_review_window(actor)
    result = move(actor, AC, ids, CLAIM_MOVES["reject"], label=claim_label(), reason=reason,
                  values={"decided_at": now(), "decided_by_id": actor.user_id,
                          "reason": reason}, commit=False)
    claims = db.session.scalars(sa.select(AC).where(AC.id.in_(result.done))).all()
    ids_ = create_notices([n for claim in claims for n in decision_notices(claim)])
    db.session.commit()
    enqueue_sends(ids_)
    return result
