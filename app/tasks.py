"""Long batch actions and exports as background tasks: a task row the browser polls for its
progress, a job that runs the same workflow function as the inline path, and its report.

Operations are registered by name in OPERATIONS (the batch operations' table in
app/workflow/operations.py, `@operation("export_units")` for the exports); each receives the
actor, the task's parameters and a `progress(done, total)` callback, and returns a report.

A running task beats (`heartbeat_at`) on its own connection; one whose beats stopped lost its
worker (killed mid-task: its transaction rolled back) and is marked failed with
`{"stalled": True}`, so its page says so and its owner can run it again.
"""
from __future__ import annotations

import logging
import threading
import traceback
from contextlib import nullcontext
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import sqlalchemy as sa
from flask import current_app
from flask_babel import force_locale
from flask_babel import lazy_gettext as _l

from app import models as m
from app.clock import now
from app.extensions import db, queue
from app.replica import replica_reads
from app.scoping.actor import WRITE, Actor, acting_as, actor_for_user
from app.scoping.rules import scoped
from app.workflow.audit import record
from app.workflow.errors import BatchResult, WorkflowError

log = logging.getLogger(__name__)

Operation = Callable[[Actor, dict, Callable[[int, int], None]], Any]
# The languages a report keeps each refusal's reason in.
LANGUAGES = ("zh", "en")
OPERATIONS: dict[str, Operation] = {}
TS = m.TaskStatus


def operation(name: str) -> Callable[[Operation], Operation]:
    def register(fn: Operation) -> Operation:
        OPERATIONS[name] = fn
        return fn

    return register


def report(result: Any) -> dict:
    """A BatchResult as the task report: counts and each refused row with its reason in
    both languages (its page shows them in the reader's, whoever started it in which)."""
    texts: dict[int, dict[str, str]] = {}
    for language in LANGUAGES:
        with force_locale(language):
            # One rendering per distinct reason object: a batch's refusals share a few.
            rendered: dict[int, str] = {}
            for refusal in result.refused:
                key = id(refusal.reason)
                if key not in rendered:
                    rendered[key] = str(refusal.reason)
                texts.setdefault(key, {})[language] = rendered[key]
    return {"done": result.done_count,
            "refused": [{"id": r.record_id, "label": str(r.label),
                         "reason": texts[id(r.reason)]} for r in result.refused]}


def reason_text(reason: Any, language: str) -> str:
    """A refusal's reason as a report keeps it, in `language` (earlier reports kept one)."""
    if isinstance(reason, dict):
        return reason.get(language) or next(iter(reason.values()), "")
    return str(reason or "")


def group_refusals(result: dict | None, language: str) -> list[dict]:
    """A report's refused rows grouped by reason, the largest group first: [{"reason",
    "count", "rows": [{"id", "label"}, …]}, …]."""
    groups: dict[str, list[dict]] = {}
    for refusal in (result or {}).get("refused") or []:
        groups.setdefault(reason_text(refusal.get("reason"), language), []).append(
            {"id": refusal.get("id"), "label": refusal.get("label", "")})
    return [{"reason": reason, "count": len(rows), "rows": rows}
            for reason, rows in sorted(groups.items(), key=lambda group: -len(group[1]))]


def store_report(actor: Actor, name: str, result: BatchResult,
                 params: dict) -> m.BackgroundTask:
    """Keep the report of a batch that ran inline as a finished task: its page is the one a
    background batch's report has, and only its owner reads it."""
    total = result.done_count + len(result.refused)
    task = m.BackgroundTask(operation=name, user_id=actor.user_id, params=params, total=total,
                            processed=total, status=TS.done, result=report(result),
                            finished_at=now())
    db.session.add(task)
    db.session.commit()
    return task


def _set(task_id: int, **values: Any) -> None:
    """Write task state on its own connection, so the browser sees progress while the
    operation's own transaction is still open."""
    if "processed" in values and "status" not in values and \
            db.engine.dialect.name == "sqlite":
        return  # SQLite (the inline default) cannot write beside the open transaction
    with db.engine.begin() as conn:
        conn.execute(sa.update(m.BackgroundTask).where(m.BackgroundTask.id == task_id)
                     .values(**values))


def wall_now() -> datetime:
    """Heartbeats tell whether a process is alive: real time, not the business clock (which
    a demo or a test may have moved)."""
    return datetime.now(timezone.utc)


def enqueue_task(task_id: int, outbox: bool = True) -> None:
    """After the commit: the task's job. The queued row is the outbox: if Redis does not
    answer, the sweeper enqueues it later."""
    queue.enqueue(run_task, task_id, job_id=f"task-{task_id}", outbox=outbox,
                  job_timeout=current_app.config.get("TASK_TIMEOUT", 3600))


def start_task(actor: Actor, name: str, params: dict, total: int) -> m.BackgroundTask:
    """Create the task and run it in a worker (or now, without Redis)."""
    task = m.BackgroundTask(operation=name, user_id=actor.user_id, params=params,
                            total=total, processed=0, status=TS.queued)
    db.session.add(task)
    db.session.commit()
    enqueue_task(task.id)
    return task


def run_again(actor: Actor, task_id: int) -> None:
    """The owner runs a failed task again, from the start: its operation re-reads and
    re-checks every row, so what a killed run left undone is done, and nothing twice."""
    changed = db.session.execute(scoped(
        sa.update(m.BackgroundTask).where(m.BackgroundTask.id == task_id,
                                          m.BackgroundTask.status == TS.failed),
        m.BackgroundTask, actor, WRITE).values(
            status=TS.queued, processed=0, result=None, finished_at=None, heartbeat_at=None,
            file_key=None).execution_options(synchronize_session=False)).rowcount
    if not changed:
        db.session.rollback()
        raise WorkflowError(_l("Only a failed task can be run again."), 409)
    record(actor, m.BackgroundTask.__tablename__, task_id, "run_again", from_state=TS.failed,
           to_state=TS.queued)
    db.session.commit()
    enqueue_task(task_id)


def fail_stalled_tasks(task_id: int | None = None) -> int:
    """Mark failed the running tasks (or the one task) whose heartbeat stopped; returns how
    many. The guarded UPDATE leaves a task that beat meanwhile alone."""
    if db.engine.dialect.name == "sqlite":
        return 0  # no heartbeat there: an inline task runs in its request, which cannot die alone
    cutoff = wall_now() - timedelta(seconds=current_app.config["TASK_HEARTBEAT_TIMEOUT"])
    BT = m.BackgroundTask
    stmt = sa.update(BT).where(BT.status == TS.running, sa.or_(
        BT.heartbeat_at.is_(None), BT.heartbeat_at < cutoff))
    if task_id is not None:
        stmt = stmt.where(BT.id == task_id)
    with db.engine.begin() as conn:
        return conn.execute(stmt.values(status=TS.failed, finished_at=now(),
                                        result={"stalled": True})).rowcount


class _Heartbeat:
    """Beats for a running task on its own connection, every TASK_HEARTBEAT_INTERVAL."""

    def __init__(self, task_id: int) -> None:
        self.task_id = task_id
        self.engine = db.engine
        self.interval = current_app.config["TASK_HEARTBEAT_INTERVAL"]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"task-{task_id}-heartbeat",
                                       daemon=True)

    def __enter__(self) -> "_Heartbeat":
        # SQLite (the inline default) cannot write beside the operation's open transaction.
        if self.engine.dialect.name != "sqlite":
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()

    def _beat(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                with self.engine.begin() as conn:
                    conn.execute(sa.update(m.BackgroundTask)
                                 .where(m.BackgroundTask.id == self.task_id,
                                        m.BackgroundTask.status == TS.running)
                                 .values(heartbeat_at=wall_now()))
            except Exception:  # a missed beat is retried next interval; the task goes on
                log.warning("task %s: heartbeat not written", self.task_id, exc_info=True)


def run_task(task_id: int) -> str:
    """The rq job: run the operation as the user who asked for it; safe to run twice (only
    the job that moves the task from queued to running runs it)."""
    task = db.session.get(m.BackgroundTask, task_id)
    if task is None or task.status is not TS.queued:
        return "skipped"
    user = db.session.get(m.User, task.user_id)
    name, params, total = task.operation, dict(task.params or {}), task.total
    db.session.rollback()
    with db.engine.begin() as conn:
        claimed = conn.execute(sa.update(m.BackgroundTask).where(
            m.BackgroundTask.id == task_id, m.BackgroundTask.status == TS.queued).values(
            status=TS.running, heartbeat_at=wall_now())).rowcount
    if not claimed:
        return "skipped"

    def progress(done: int, of: int | None = None) -> None:
        _set(task_id, processed=min(done, of or total), total=max(of or total, done))

    try:
        actor = actor_for_user(user)
        # Exports only read: on the replica when one is configured (app/replica.py).
        reads = replica_reads() if name.startswith("export_") else nullcontext()
        with acting_as(actor), _Heartbeat(task_id), reads:
            outcome = OPERATIONS[name](actor, params, progress)
    except Exception as exc:  # the report says it failed; the operation rolled back
        db.session.rollback()
        log.error("task %s failed: %s", task_id, traceback.format_exc())
        _set(task_id, status=TS.failed, finished_at=now(),
             result={"error": str(getattr(exc, "message", exc))[:500]})
        return "failed"
    result = report(outcome) if isinstance(outcome, BatchResult) else dict(outcome)
    file_key = result.pop("file_key", None)
    _set(task_id, status=TS.done, processed=total, finished_at=now(), result=result,
         file_key=file_key)
    return "done"
