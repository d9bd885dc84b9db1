"""An account claim's state machine and messages (to the contacts on file and to the claimant,
each in its own language): what app/workflow/claims.py and registration.py both need."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask_babel import gettext as _

from app import models as m
from app.workflow.notices import Notice, render
from app.workflow.transitions import Move, table

CS = m.ClaimStatus
AC = m.AccountClaim
# The account claim's state machine (docs/design.md, "Account claims").
CLAIM_MOVES = table({
    "approve": Move(from_={CS.pending}, to=CS.approved),
    "reject": Move(from_={CS.pending}, to=CS.rejected),
    # The unit proved its identity after all: the claim is moot (registration.py).
    "withdraw": Move(from_={CS.pending}, to=CS.withdrawn),
})


def claim_label() -> Any:
    return sa.select(m.Unit.name).where(m.Unit.id == AC.unit_id).scalar_subquery()



def _notices(key: str, unit_id: int | None, mobile: str | None, email: str | None,
             language: str, text, sms_template: str, sms_params: dict[str, str]
             ) -> list[Notice]:
    subject, body = render(language, text)
    return ([Notice(f"{key}:email", m.NotificationChannel.email, unit_id, email, language,
                    subject, body)] if email else []) + \
        ([Notice(f"{key}:sms", m.NotificationChannel.sms, unit_id, mobile, language, subject,
                 body, sms_template, sms_params)] if mobile else [])


def claim_received_notices(claim: m.AccountClaim, unit: m.Unit) -> list[Notice]:
    def to_owner():
        return (_("Someone asked to register your CIIE account afresh"),
                _("Someone failed every earlier-edition check for %(unit)s and asked to "
                  "register it afresh. Your account, password and contacts are unchanged. "
                  "Your trading delegation will confirm who is asking before anything "
                  "changes; if this was not you, tell your delegation.", unit=unit.name))

    def to_claimant():
        return (_("Your request to register afresh was received"),
                _("Your request to register %(unit)s afresh is waiting for your trading "
                  "delegation, which will confirm who you are. You will hear of its "
                  "decision; until then you cannot log in.", unit=claim.name))

    # The claimant is not (yet) the unit: its notices are not the unit's to read.
    return (_notices(f"claim:{claim.id}:owner", unit.id, unit.mobile, unit.email,
                     unit.language, to_owner, "claim_to_owner", {"unit": unit.name})
            + _notices(f"claim:{claim.id}:claimant", None, claim.mobile, claim.email,
                       claim.language, to_claimant, "claim_received", {"unit": claim.name}))


def handed_over_notices(claim: m.AccountClaim, unit: m.Unit, old: dict) -> list[Notice]:
    def to_old():
        return (_("Your CIIE account was handed over"),
                _("After confirming the identity of the person who asked, your trading "
                  "delegation handed the CIIE account of %(unit)s over to new contacts. The "
                  "old password no longer works. If this is wrong, contact your delegation.",
                  unit=unit.name))

    return (_notices(f"claim:{claim.id}:handed-over", None, old["mobile"], old["email"],
                     old["language"], to_old, "claim_handed_over", {"unit": unit.name})
            + decision_notices(claim))


def decision_notices(claim: m.AccountClaim) -> list[Notice]:
    status, reason = claim.status, claim.reason or ""

    def text():
        if status is CS.approved:
            return (_("Your request to register afresh was approved"),
                    _("Your trading delegation approved your request. Log in with the credit "
                      "code and the password you chose, then fill in your unit's "
                      "registration; earlier editions are not shown."))
        if status is CS.withdrawn:
            return (_("Your request to register afresh was withdrawn"),
                    _("The unit proved its identity in another way, so your request to "
                      "register it afresh was withdrawn."))
        return (_("Your request to register afresh was refused"),
                _("Your trading delegation refused your request to register afresh: "
                  "%(reason)s", reason=reason))

    kind = {CS.approved: "claim_approved", CS.withdrawn: "claim_withdrawn"}.get(
        status, "claim_refused")
    return _notices(f"claim:{claim.id}:{status.value}", None, claim.mobile, claim.email,
                    claim.language, text, kind, {})
