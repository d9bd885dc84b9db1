"""Badges: production for persons who passed security review, badge reuse, printing,
deactivation and new codes for lost cards (the signed QR token itself is app.badge_tokens).

A new badge gets a number (B05000001…), a random `token_nonce` and the printed snapshot (name,
unit, delegation or sub-delegation, tag); its person moves approved → badge_issued with
`badge_id` set. A reuse person whose tag did not change keeps the earlier badge: it is
re-activated for this edition and nothing is printed. An upgraded reuse person gets a new badge
and the earlier one is deactivated (the gate refuses it from then on). Every step is set-based:
a batch of 2 or 2,000 persons costs the same statements.

No card is made or printed without the holder's photo: production, printing and reprinting
refuse such persons and badges here, so every path (batch, single row, API) reports the same
reason. The badge office works from queues (`waiting_for_badge`, `waiting_for_reactivation`,
`reprint_requested`; parcels in app.workflow.delivery), counted by `queue_counts`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import sqlalchemy as sa
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from app import models as m
from app import storage
from app.badge_tokens import new_nonce
from app.clock import now, now_shanghai
from app.documents.badges import badge_sheet
from app.extensions import db
from app.input_checks import check_lengths
from app.scoping.actor import WRITE, Actor
from app.scoping.rules import scoped
from app.tasks import report as task_report
from app.workflow.audit import record_many
from app.workflow.delivery import waiting_for_parcel
from app.workflow.editions import current_edition
from app.workflow.errors import BatchResult, WorkflowError
from app.workflow.numbers import reserve
from app.workflow.persons import PERSON_MOVES, person_label
from app.workflow.transitions import as_id_select, move

PR = m.PersonRegistration
UR = m.UnitRegistration
B = m.Badge


# ---- production ---------------------------------------------------------------------------

@dataclass
class Production:
    """What a production batch did: persons moved (or refused), badges made and re-activated."""

    result: BatchResult
    new_badge_ids: list[int] = field(default_factory=list)
    reused_badge_ids: list[int] = field(default_factory=list)
    deactivated_badge_ids: list[int] = field(default_factory=list)


def keeps_earlier_badge() -> Any:
    """SQL: a reuse person whose tag did not change and whose earlier badge is still active."""
    return sa.and_(PR.is_reuse.is_(True), PR.tag == PR.previous_tag,
                   PR.previous_badge_id.in_(sa.select(B.id).where(B.active.is_(True))))


def waiting_for_badge(edition_id: int) -> Any:
    """SQL: persons of the edition who passed security review and need a new card printed."""
    return sa.and_(PR.edition_id == edition_id, PR.status == m.PersonStatus.approved,
                   sa.not_(keeps_earlier_badge()))


def waiting_for_reactivation(edition_id: int) -> Any:
    """SQL: persons of the edition who passed review and keep their earlier badge (reuse)."""
    return sa.and_(PR.edition_id == edition_id, PR.status == m.PersonStatus.approved,
                   keeps_earlier_badge())


def reprint_requested(edition_id: int) -> Any:
    """SQL: active badges of the edition whose card is to be printed again with a new code."""
    return sa.and_(B.reprint_requested_at.is_not(None), B.edition_id == edition_id,
                   B.active.is_(True))


def persons_without_photo(person_ids: sa.Select) -> list[int]:
    """Those of these persons no card can show (one query): no photo, or its file is gone."""
    rows = db.session.execute(sa.select(m.Person.id, m.Person.photo_key)
                              .where(m.Person.id.in_(person_ids))).all()
    return [row.id for row in rows
            if not row.photo_key or not os.path.isfile(storage.path_of(row.photo_key))]


NO_PHOTO = _l("no photo: a badge is not made without the holder's photo")
NOT_CURRENT = _l("not registered for the current edition")


def badge_number(edition: m.Edition, sequence: int) -> str:
    return f"B{edition.number:02d}{sequence:06d}"


def produce_badges(actor: Actor, ids: Iterable[int] | sa.Select,
                   commit: bool = True) -> Production:
    """Issue badges to approved persons of the current edition (see the module docstring)."""
    edition = current_edition()
    selected = as_id_select(PR, ids)
    kept = sa.select(PR.id).where(PR.id.in_(selected), keeps_earlier_badge())
    checks = [(PR.edition_id == edition.id, NOT_CURRENT)]
    # A re-activated badge is the card its holder already has: only new cards need the photo.
    faceless = persons_without_photo(sa.select(PR.person_id).where(
        PR.id.in_(selected), PR.id.not_in(kept)))
    moved_at = now()
    reused = _issue_earlier_badges(actor, kept, checks, moved_at)
    fresh = move(actor, PR, sa.select(PR.id).where(PR.id.in_(selected), PR.id.not_in(kept)),
                 PERSON_MOVES["issue_badge"], label=person_label(),
                 checks=checks + [(PR.person_id.not_in(faceless), NO_PHOTO)], reason="new",
                 values={"status_changed_at": moved_at}, commit=False)
    production = Production(BatchResult(done=reused.done + fresh.done,
                                         refused=reused.refused + fresh.refused))
    if fresh.done:
        production.new_badge_ids = _make_badges(actor, edition, fresh.done)
        production.deactivated_badge_ids = _deactivate_earlier(actor, fresh.done)
    if reused.done:
        production.reused_badge_ids = _reactivate(actor, edition, reused.done)
    if commit:
        db.session.commit()
    return production


def reactivate_badges(actor: Actor, ids: Iterable[int] | sa.Select) -> BatchResult:
    """Only the re-activations of a selection (nothing printed, so no task): a person who
    needs a new card is refused, it is produced and printed from the persons waiting for a
    badge."""
    edition = current_edition()
    result = _issue_earlier_badges(
        actor, ids, [(PR.edition_id == edition.id, NOT_CURRENT),
                     (keeps_earlier_badge(), _l("needs a new badge: produce it from the "
                                                "persons waiting for a badge"))], now())
    if result.done:
        _reactivate(actor, edition, result.done)
    db.session.commit()
    return result


def _issue_earlier_badges(actor: Actor, ids: Iterable[int] | sa.Select, checks: list,
                          moved_at: Any) -> BatchResult:
    """Move reuse persons to badge_issued with their earlier badge (the caller re-activates
    it and commits)."""
    return move(actor, PR, ids, PERSON_MOVES["issue_badge"], label=person_label(),
                checks=checks, reason="reuse",
                values={"badge_id": PR.previous_badge_id, "status_changed_at": moved_at},
                commit=False)


def _make_badges(actor: Actor, edition: m.Edition, registration_ids: list[int]) -> list[int]:
    """Insert one badge per registration with its printed snapshot, and point each
    registration at its badge (one SELECT, one INSERT, one UPDATE, whatever the count)."""
    Delegation = m.Delegation
    rows = db.session.execute(
        sa.select(PR.id, PR.person_id, PR.tag, m.Person.name, m.Unit.name.label("unit"),
                  Delegation.name_zh.label("delegation"))
        .join(m.Person, m.Person.id == PR.person_id)
        .join(UR, UR.id == PR.unit_registration_id)
        .join(m.Unit, m.Unit.id == UR.unit_id)
        # The sub-delegation is printed when there is one: it is the unit's closer group.
        .outerjoin(Delegation, Delegation.id == sa.func.coalesce(UR.sub_delegation_id,
                                                                 UR.delegation_id))
        .where(PR.id.in_(registration_ids)).order_by(PR.id)).all()
    numbers = reserve(f"badge:{edition.id}", len(rows))
    produced_at = now()
    badge_ids = list(db.session.scalars(
        sa.insert(B).returning(B.id, sort_by_parameter_order=True),
        [{"number": badge_number(edition, n), "person_id": row.person_id,
          "edition_id": edition.id, "tag": row.tag, "status": m.BadgeStatus.produced,
          "active": True, "token_nonce": new_nonce(), "printed_name": row.name,
          "printed_unit": row.unit, "printed_delegation": row.delegation,
          "produced_at": produced_at}
         for row, n in zip(rows, numbers, strict=True)]))
    db.session.execute(sa.update(PR), [{"id": row.id, "badge_id": badge_id}
                                       for row, badge_id in zip(rows, badge_ids, strict=True)])
    record_many(actor, "badge", [(badge_id, None) for badge_id in badge_ids], "produce",
                m.BadgeStatus.produced)
    return badge_ids


def _deactivate_earlier(actor: Actor, registration_ids: list[int]) -> list[int]:
    """Upgraded reuse persons got a new badge: their earlier one stops opening the gate."""
    earlier = sa.select(PR.previous_badge_id).where(PR.id.in_(registration_ids),
                                                    PR.previous_badge_id.is_not(None))
    ids = list(db.session.scalars(
        sa.update(B).where(B.id.in_(earlier), B.active.is_(True))
        .values(active=False, deactivated_at=now()).returning(B.id)
        .execution_options(synchronize_session=False)))
    record_many(actor, "badge", [(badge_id, "active") for badge_id in ids], "deactivate",
                "deactivated", reason="replaced by a new badge (tag upgraded)")
    return ids


def _reactivate(actor: Actor, edition: m.Edition, registration_ids: list[int]) -> list[int]:
    """Reuse persons with an unchanged tag keep their badge: valid again for this edition."""
    earlier = sa.select(PR.previous_badge_id).where(PR.id.in_(registration_ids))
    ids = list(db.session.scalars(
        sa.update(B).where(B.id.in_(earlier))
        .values(active=True, deactivated_at=None, reactivated_for_edition_id=edition.id)
        .returning(B.id).execution_options(synchronize_session=False)))
    record_many(actor, "badge", [(badge_id, "active") for badge_id in ids], "reactivate",
                "active", detail={"edition": edition.number})
    return ids


# ---- printing, new codes, deactivation ----------------------------------------------------

def printable(actor: Actor, ids: Iterable[int] | sa.Select) -> tuple[BatchResult, list[int]]:
    """Split selected badges into those that may be printed (active, made for the current
    edition, the holder's photo on file) and refusals: a reused badge is never printed again
    (two queries)."""
    edition = current_edition()
    selected = as_id_select(B, ids)
    rows = db.session.execute(scoped(
        sa.select(B.id, B.number, B.active, B.edition_id, B.person_id)
        .where(B.id.in_(selected)).order_by(B.number), B, actor, WRITE)).all()
    faceless = set(persons_without_photo(sa.select(B.person_id).where(B.id.in_(selected))))
    result = BatchResult()
    for row in rows:
        if not row.active:
            result.refuse(row.id, row.number, _l("the badge is deactivated"))
        elif row.edition_id != edition.id:
            result.refuse(row.id, row.number,
                          _l("a badge of an earlier edition (reused) is not printed again"))
        elif row.person_id in faceless:
            result.refuse(row.id, row.number, NO_PHOTO)
        else:
            result.done.append(row.id)
    return result, result.done


def reissue_codes(actor: Actor, badge_ids: list[int]) -> None:
    """New nonces for these badges (one statement): their printed codes stop working, so a
    lost card can be replaced by a reprint, which also settles any reprint request. The
    caller commits."""
    if not badge_ids:
        return
    db.session.execute(sa.update(B), [{"id": badge_id, "token_nonce": new_nonce(),
                                       "reprint_requested_at": None, "reprint_reason": None}
                                      for badge_id in badge_ids])
    record_many(actor, "badge", [(badge_id, None) for badge_id in badge_ids], "reissue_code",
                reason="printed codes invalidated")


def request_reprints(actor: Actor, ids: Iterable[int] | sa.Select,
                     reason: str | None) -> BatchResult:
    """Put lost or damaged cards in the reprint queue, with the reason (one UPDATE): they
    are printed again with a new code from there."""
    reason = (reason or "").strip()
    if not reason:
        raise WorkflowError(_l("Enter the reason."), 400)
    check_lengths(B, {"reprint_reason": reason})
    result, badge_ids = printable(actor, ids)
    waiting = dict(db.session.execute(sa.select(B.id, B.number).where(
        B.id.in_(badge_ids), B.reprint_requested_at.is_not(None))).all())
    for badge_id, number in sorted(waiting.items(), key=lambda item: item[1]):
        result.refuse(badge_id, number, _l("a reprint is already asked for"))
    asked = [badge_id for badge_id in badge_ids if badge_id not in waiting]
    # Still unasked when written: of two clerks asking at once, one request stands.
    result.done = list(db.session.scalars(
        sa.update(B).where(B.id.in_(asked), B.reprint_requested_at.is_(None))
        .values(reprint_requested_at=now(), reprint_reason=reason).returning(B.id)
        .execution_options(synchronize_session=False))) if asked else []
    record_many(actor, "badge", [(badge_id, None) for badge_id in result.done],
                "request_reprint", reason=reason)
    db.session.commit()
    return result


def queue_counts(actor: Actor, edition_id: int) -> dict[str, int]:
    """How many rows wait in each of the badge office's queues, in the actor's scope: one
    statement of four set-based COUNTs."""
    def count(model: type, condition: Any) -> Any:
        return scoped(sa.select(sa.func.count()).select_from(model).where(condition),
                      model, actor).scalar_subquery()

    row = db.session.execute(sa.select(
        count(PR, waiting_for_badge(edition_id)).label("badges"),
        count(PR, waiting_for_reactivation(edition_id)).label("reactivations"),
        count(B, reprint_requested(edition_id)).label("reprints"),
        count(B, waiting_for_parcel(edition_id)).label("parcels"))).one()
    return dict(row._mapping)


def deactivate_badges(actor: Actor, ids: Iterable[int] | sa.Select,
                      reason: str | None = None) -> BatchResult:
    """Deactivate badges (lost, withdrawn): the gate refuses them from now on."""
    selected = as_id_select(B, ids)
    rows = db.session.execute(scoped(
        sa.select(B.id, B.number, B.active).where(B.id.in_(selected)), B, actor, WRITE)).all()
    result = BatchResult()
    for row in rows:
        if not row.active:
            result.refuse(row.id, row.number, _l("the badge is already deactivated"))
    if len(result.refused) < len(rows):
        done = db.session.scalars(scoped(
            sa.update(B).where(B.id.in_(selected), B.active.is_(True))
            .values(active=False, deactivated_at=now()).returning(B.id), B, actor, WRITE)
            .execution_options(synchronize_session=False)).all()
        record_many(actor, "badge", [(badge_id, "active") for badge_id in done], "deactivate",
                    "deactivated", reason=reason)
        result.done = list(done)
    db.session.commit()
    return result


def print_sheet(actor: Actor, ids: Iterable[int] | sa.Select,
                progress: Callable[[int, int], None], new_codes: bool = False) -> dict:
    """Print the selected badges on A4 sheets (a task operation): the report and the file.
    With `new_codes` every printed badge first gets a new nonce (a replacement card)."""
    result, badge_ids = printable(actor, ids)
    if new_codes:
        reissue_codes(actor, badge_ids)
    report = task_report(result)
    if badge_ids:
        report.update(_store_sheet(badge_sheet(badge_ids, progress)))
    db.session.commit()
    return report


def produce_and_print(actor: Actor, ids: Iterable[int] | sa.Select,
                      progress: Callable[[int, int], None]) -> dict:
    """Produce badges for the selected persons and print the new ones in the same task: the
    badges are committed only once their sheet exists. Re-activated badges are not printed."""
    production = produce_badges(actor, ids, commit=False)
    report = task_report(production.result)
    notes = [_("%(count)d new badge(s) printed.", count=len(production.new_badge_ids))]
    if production.reused_badge_ids:
        notes.append(_("%(count)d earlier badge(s) re-activated for this edition (kept by "
                       "their holders, nothing printed).",
                       count=len(production.reused_badge_ids)))
    if production.deactivated_badge_ids:
        notes.append(_("%(count)d earlier badge(s) deactivated (tag upgraded).",
                       count=len(production.deactivated_badge_ids)))
    report["notes"] = notes
    if production.new_badge_ids:
        report.update(_store_sheet(badge_sheet(production.new_badge_ids, progress)))
    db.session.commit()
    return report


def _store_sheet(pdf: bytes) -> dict:
    stamp = now_shanghai().strftime("%Y%m%d-%H%M%S")
    return {"file_key": storage.store(pdf, "pdf"), "filename": f"badges-{stamp}.pdf"}
