"""Batch operations by name: what a view runs inline for small selections and a background
task runs for large ones (see app.tasks). One table maps each name to its workflow function,
another to the moves it makes (which rows it can change: the "all matching" confirmation
counts them)."""
from __future__ import annotations

from typing import Any, Callable

from app import models as m
from app.scoping.actor import Actor
from app.tasks import OPERATIONS, Operation
from app.workflow import (
    badges,
    claims,
    locking,
    notices,
    payments,
    persons,
    refunds,
    review,
    units,
)
from app.workflow.claim_rules import CLAIM_MOVES
from app.workflow.notices import NOTICE_MOVES
from app.workflow.payments import PAYMENT_MOVES
from app.workflow.persons import PERSON_MOVES
from app.workflow.refunds import REFUND_MOVES
from app.workflow.transitions import Move
from app.workflow.units import UNIT_MOVES


def on_ids(fn: Callable[..., Any], *args: Any, reason: bool = False, progress: bool = False,
           **kwargs: Any) -> Operation:
    """`fn(actor, ids, [reason,] [progress,] *args, **kwargs)` as an operation, which gets
    the task's parameters {"ids", "reason"} and its progress callback."""
    def run(actor: Actor, params: dict, report_progress: Callable[[int, int], None]) -> Any:
        given = [params["ids"]]
        if reason:
            given.append(params.get("reason"))
        if progress:
            given.append(report_progress)
        return fn(actor, *given, *args, **kwargs)

    return run


OPERATIONS.update({
    "approve_units": on_ids(units.approve_units),
    "return_units": on_ids(units.return_units, reason=True),
    "reject_units": on_ids(units.reject_units, reason=True),
    "approve_claims": on_ids(claims.approve_claims),
    "reject_claims": on_ids(claims.reject_claims, reason=True),
    "submit_persons": on_ids(persons.submit_persons),
    **{f"tag_{tag.value}": on_ids(locking.tag_persons, tag) for tag in m.Tag},
    "lock_persons": on_ids(locking.lock_persons),
    "cancel_persons": on_ids(persons.cancel_persons, reason=True),
    "confirm_transfers": on_ids(payments.confirm_transfers),
    "reject_transfers": on_ids(payments.reject_transfers, reason=True),
    "resend_notifications": on_ids(notices.resend_notifications),
    "approve_refunds": on_ids(refunds.approve_refunds),
    "reject_refunds": on_ids(refunds.reject_refunds, reason=True),
    "execute_refunds": on_ids(refunds.execute_refunds),
    "complete_refunds": on_ids(refunds.complete_refunds),
    "pass_review": on_ids(review.pass_persons),
    **{f"fail_review_{why.value}": on_ids(review.fail_persons, why) for why in m.ReviewReason},
    # Badge operations always run as tasks: their report comes with a sheet of cards to download.
    "produce_badges": on_ids(badges.produce_and_print, progress=True),
    "print_badges": on_ids(badges.print_sheet, progress=True),
    "reprint_badges": on_ids(badges.print_sheet, progress=True, new_codes=True),
})

# The entries of the transition tables each operation moves rows along: a row in none of
# their from-states is refused by the operation, so a confirmation counts it as skipped.
# Operations that move no status (printing a sheet) have no entry.
OPERATION_MOVES: dict[str, tuple[Move, ...]] = {
    "approve_units": (UNIT_MOVES["approve"],),
    "return_units": (UNIT_MOVES["return"],),
    "reject_units": (UNIT_MOVES["reject"],),
    "approve_claims": (CLAIM_MOVES["approve"],),
    "reject_claims": (CLAIM_MOVES["reject"],),
    "submit_persons": (PERSON_MOVES["submit"], PERSON_MOVES["submit_reuse"]),
    **{f"tag_{tag.value}": (PERSON_MOVES["tag"], PERSON_MOVES["tag_reuse"]) for tag in m.Tag},
    "lock_persons": (PERSON_MOVES["lock_paying"], PERSON_MOVES["lock_free"]),
    "cancel_persons": (PERSON_MOVES["cancel"],),
    "confirm_transfers": (PAYMENT_MOVES["confirm"],),
    "reject_transfers": (PAYMENT_MOVES["reject"],),
    "resend_notifications": (NOTICE_MOVES["resend"],),
    "approve_refunds": (REFUND_MOVES["approve"],),
    "reject_refunds": (REFUND_MOVES["reject"],),
    "execute_refunds": (REFUND_MOVES["execute"],),
    "complete_refunds": (REFUND_MOVES["done"],),
    "pass_review": (PERSON_MOVES["review_passed"],),
    **{f"fail_review_{why.value}": (PERSON_MOVES["review_failed"],) for why in m.ReviewReason},
    "produce_badges": (PERSON_MOVES["issue_badge"],),
}
