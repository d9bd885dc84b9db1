"""The one way a status moves: scoped, checked against allowed from-states, set-based, audited."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Sequence

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l

from app.extensions import db
from app.formatting import fmt_datetime
from app.input_checks import check_lengths
from app.models import AuditEvent
from app.scoping.actor import WRITE, Actor
from app.scoping.rules import scoped
from app.workflow.audit import record_many
from app.workflow.errors import BatchResult, WorkflowError

# A rule a row must also satisfy: (SQL condition on the row, reason shown when it does not).
Check = tuple[Any, Any]


@dataclass(frozen=True)
class Move:
    """One entry of a record's transition table: the states a row may leave, the one it
    reaches, and the action the audit trail names (the entry's key unless given: two entries
    may share an action when one decision has two outcomes, e.g. lock)."""
    from_: tuple
    to: Any
    action: str = ""

    def __post_init__(self) -> None:
        # Kept in the enum's order, so SQL and refusals read the same on every run.
        states = set(self.from_)
        object.__setattr__(self, "from_", tuple(s for s in type(self.to) if s in states))


def table(moves: dict[str, Move]) -> dict[str, Move]:
    """A record's transition table, each move named by its key unless it names its action.
    tests/test_state_machines.py holds every table against docs/design.md."""
    return {key: replace(step, action=step.action or key) for key, step in moves.items()}


def insert_guarded(row: Any, refusal: Any) -> None:
    """Add and flush a new row whose unique index guards a race (one open payment per order,
    one waiting claim per unit): the loser's insert is refused with `refusal` (409), nothing
    changed."""
    db.session.add(row)
    try:
        db.session.flush()
    except sa.exc.IntegrityError:
        db.session.rollback()
        raise WorkflowError(refusal, 409) from None


def as_id_select(model: type, ids: Iterable[int] | sa.Select) -> sa.Select:
    if isinstance(ids, sa.Select):
        return ids
    return sa.select(model.id).where(model.id.in_(list(ids)))


def wrong_state(status: Any) -> Any:
    return _l("not possible while the status is \"%(status)s\"", status=status.label)


def moved_by(status: Any, who: str, at: Any) -> Any:
    """The refusal a race's loser reads: what the row became meanwhile, by whom and when."""
    return _l("not possible while the status is \"%(status)s\" (made so by %(who)s, "
              "%(when)s)", status=status.label, who=who, when=fmt_datetime(at))


def last_moves(record_type: str, ids: Iterable[int]) -> dict[int, tuple[str, Any, Any]]:
    """The latest audited move of each record: {id: (who, to_state, when)}, in one query."""
    ids = list(ids)
    if not ids:
        return {}
    A = AuditEvent
    latest = sa.select(sa.func.max(A.id)).where(
        A.record_type == record_type, A.record_id.in_(ids), A.to_state.is_not(None)
    ).group_by(A.record_id)
    rows = db.session.execute(sa.select(A.record_id, A.actor_name, A.to_state, A.at)
                              .where(A.id.in_(latest))).all()
    return {r.record_id: (r.actor_name, r.to_state, r.at) for r in rows}


def select_movable(actor: Actor, model: type, id_select: sa.Select, from_states: tuple,
                   label: Any, checks: Sequence[Check] = (),
                   extra: Sequence[Any] = ()) -> tuple[BatchResult, dict[int, Any]]:
    """Read the selected rows in the actor's write scope (one SELECT) and split them into
    movable ones ({id: row}) and refusals with their reason."""
    check_columns = [sa.case((cond, sa.true()), else_=sa.false()).label(f"check_{i}")
                     for i, (cond, _reason) in enumerate(checks)]
    rows = db.session.execute(scoped(
        sa.select(model.id, model.status, label.label("label"), *check_columns, *extra)
        .where(model.id.in_(id_select)),
        model, actor, WRITE,
    )).all()
    result = BatchResult()
    movable: dict[int, Any] = {}
    wrong = [row.id for row in rows if row.status not in from_states]
    moves = last_moves(model.__tablename__, wrong) if wrong else {}
    for row in rows:
        if row.status not in from_states:
            who, state, at = moves.get(row.id, (None, None, None))
            # Say who made it so when the audit trail knows (a race lost a moment ago).
            result.refuse(row.id, row.label, moved_by(row.status, who, at)
                          if state == getattr(row.status, "value", row.status) and who
                          else wrong_state(row.status))
            continue
        failed = next((checks[i][1] for i in range(len(checks)) if not row[3 + i]), None)
        if failed is not None:
            result.refuse(row.id, row.label, failed)
            continue
        movable[row.id] = row
    return result, movable


def guarded_update(actor: Actor, model: type, id_select: sa.Select, from_states: tuple,
                   checks: Sequence[Check] = ()) -> sa.Update:
    """UPDATE limited to the scope, the from-states and the checks: a row that changed since
    it was read is left alone."""
    return scoped(
        sa.update(model).where(model.id.in_(id_select), model.status.in_(from_states),
                               *(cond for cond, _reason in checks)),
        model, actor, WRITE,
    ).execution_options(synchronize_session=False)


def report_lost_race(result: BatchResult, model: type, record_type: str,
                     rows: dict[int, Any]) -> None:
    """Refuse the rows another request moved between our read and our update, naming the move
    that won (from the audit trail, committed by the time our guarded UPDATE returned)."""
    moves = last_moves(record_type, rows)
    current = dict(db.session.execute(sa.select(model.id, model.status)
                                      .where(model.id.in_(list(rows)))).tuples().all())
    for rid, row in rows.items():
        status = current.get(rid, row.status)
        if rid in moves:
            who, _state, at = moves[rid]
            result.refuse(rid, row.label, moved_by(status, who, at))
        else:
            result.refuse(rid, row.label, wrong_state(status))


def move(actor: Actor, model: type, ids: Iterable[int] | sa.Select, step: Move, *,
         label: Any, checks: Sequence[Check] = (), reason: str | None = None,
         values: dict[str, Any] | Callable[[list[int]], dict[str, Any]] | None = None,
         record_type: str | None = None, commit: bool = True,
         scope_actor: Actor | None = None) -> BatchResult:
    """Move the selected rows of `model` along `step`, an entry of its transition table:
    from any of `step.from_` to `step.to`.

    Rows outside the actor's write scope are never touched (nor reported). Each refused row is
    reported with its reason: a wrong state, or the first failed check. Two statements
    (a SELECT and an UPDATE … RETURNING) plus one INSERT of audit rows, whatever the batch size.

    `values` may be a function of the movable ids (in order) when they are made for exactly
    those rows, e.g. numbers reserved from a counter; the UPDATE is then limited to them.
    `scope_actor` (SYSTEM) is for consequences of a move already authorised, e.g. the persons
    of an order finance confirmed as paid: the audit still names `actor`.
    """
    # A set-based UPDATE passes no flush: text longer than its column is refused here, before
    # anything is read, whatever state the rows are in.
    if not callable(values):
        check_lengths(model, values or {})
    check_lengths(AuditEvent, {"reason": reason})
    id_select = as_id_select(model, ids)
    scoper = scope_actor or actor
    result, movable = select_movable(scoper, model, id_select, step.from_, label, checks)
    if movable:
        update = guarded_update(scoper, model, id_select, step.from_, checks)
        if callable(values):
            ordered = sorted(movable)
            made = values(ordered)
            check_lengths(model, made)
            update = update.where(model.id.in_(ordered)).values(**made)
        else:
            update = update.values(**(values or {}))
        updated = db.session.scalars(
            update.values(status=step.to).returning(model.id)).all()
        done = [(rid, movable[rid].status) for rid in updated if rid in movable]
        record_many(actor, record_type or model.__tablename__, done, step.action, step.to,
                    reason)
        result.done = [rid for rid, _status in done]
        moved = set(updated)
        lost = [rid for rid in movable if rid not in moved]
        if lost:
            # Read movable, but another request moved them first: say what it did.
            report_lost_race(result, model, record_type or model.__tablename__,
                             {rid: movable[rid] for rid in lost})
    if commit:
        db.session.commit()
    return result
