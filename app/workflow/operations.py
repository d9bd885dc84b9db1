"""Batch operations by name: what a view runs inline for small selections and a background
task runs for large ones (see app.tasks). Each takes the actor, {"ids", "reason"}, progress."""
from __future__ import annotations

from typing import Any, Callable

from app import models as m
from app.security import Actor
from app.tasks import operation
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

Progress = Callable[[int, int], None]


@operation("approve_units")
def approve_units(actor: Actor, params: dict, progress: Progress) -> Any:
    return units.approve_units(actor, params["ids"])


@operation("return_units")
def return_units(actor: Actor, params: dict, progress: Progress) -> Any:
    return units.return_units(actor, params["ids"], params.get("reason"))


@operation("reject_units")
def reject_units(actor: Actor, params: dict, progress: Progress) -> Any:
    return units.reject_units(actor, params["ids"], params.get("reason"))


@operation("approve_claims")
def approve_claims(actor: Actor, params: dict, progress: Progress) -> Any:
    return claims.approve_claims(actor, params["ids"])


@operation("reject_claims")
def reject_claims(actor: Actor, params: dict, progress: Progress) -> Any:
    return claims.reject_claims(actor, params["ids"], params.get("reason"))


@operation("submit_persons")
def submit_persons(actor: Actor, params: dict, progress: Progress) -> Any:
    return persons.submit_persons(actor, params["ids"])


def _tagger(tag: m.Tag) -> Callable[[Actor, dict, Progress], Any]:
    def tag_them(actor: Actor, params: dict, progress: Progress) -> Any:
        return locking.tag_persons(actor, params["ids"], tag)

    return tag_them


for _tag in m.Tag:
    operation(f"tag_{_tag.value}")(_tagger(_tag))


@operation("lock_persons")
def lock_persons(actor: Actor, params: dict, progress: Progress) -> Any:
    return locking.lock_persons(actor, params["ids"])


@operation("cancel_persons")
def cancel_persons(actor: Actor, params: dict, progress: Progress) -> Any:
    return persons.cancel_persons(actor, params["ids"], params.get("reason"))


@operation("confirm_transfers")
def confirm_transfers(actor: Actor, params: dict, progress: Progress) -> Any:
    return payments.confirm_transfers(actor, params["ids"])


@operation("reject_transfers")
def reject_transfers(actor: Actor, params: dict, progress: Progress) -> Any:
    return payments.reject_transfers(actor, params["ids"], params.get("reason"))


@operation("resend_notifications")
def resend_notifications(actor: Actor, params: dict, progress: Progress) -> Any:
    return notices.resend_notifications(actor, params["ids"])


@operation("approve_refunds")
def approve_refunds(actor: Actor, params: dict, progress: Progress) -> Any:
    return refunds.approve_refunds(actor, params["ids"])


@operation("reject_refunds")
def reject_refunds(actor: Actor, params: dict, progress: Progress) -> Any:
    return refunds.reject_refunds(actor, params["ids"], params.get("reason"))


@operation("execute_refunds")
def execute_refunds(actor: Actor, params: dict, progress: Progress) -> Any:
    return refunds.execute_refunds(actor, params["ids"])


@operation("complete_refunds")
def complete_refunds(actor: Actor, params: dict, progress: Progress) -> Any:
    return refunds.complete_refunds(actor, params["ids"])


@operation("pass_review")
def pass_review(actor: Actor, params: dict, progress: Progress) -> Any:
    return review.pass_persons(actor, params["ids"])


def _failer(reason: m.ReviewReason) -> Callable[[Actor, dict, Progress], Any]:
    def fail_them(actor: Actor, params: dict, progress: Progress) -> Any:
        return review.fail_persons(actor, params["ids"], reason)

    return fail_them


for _reason in m.ReviewReason:
    operation(f"fail_review_{_reason.value}")(_failer(_reason))


# Badge operations always run as tasks: their report comes with a sheet of cards to download.
@operation("produce_badges")
def produce_badges(actor: Actor, params: dict, progress: Progress) -> Any:
    return badges.produce_and_print(actor, params["ids"], progress)


@operation("print_badges")
def print_badges(actor: Actor, params: dict, progress: Progress) -> Any:
    return badges.print_sheet(actor, params["ids"], progress)


@operation("reprint_badges")
def reprint_badges(actor: Actor, params: dict, progress: Progress) -> Any:
    return badges.print_sheet(actor, params["ids"], progress, new_codes=True)
