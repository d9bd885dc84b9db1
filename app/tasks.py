"""Long batch actions and exports as background tasks: a task row the browser polls for its
progress, a job that runs the same workflow function as the inline path, and its report.

Operations are registered by name (`@operation("lock_persons")`); each receives the actor, the
task's parameters and a `progress(done, total)` callback, and returns a report dict.
"""
from __future__ import annotations

import logging
import traceback
from typing import Any, Callable

import sqlalchemy as sa
from flask import current_app

from app import models as m
from app.clock import now
from app.extensions import db, queue
from app.security import Actor, acting_as, actor_for_user
from app.workflow.errors import BatchResult

log = logging.getLogger(__name__)

Operation = Callable[[Actor, dict, Callable[[int, int], None]], Any]
OPERATIONS: dict[str, Operation] = {}
TS = m.TaskStatus


def operation(name: str) -> Callable[[Operation], Operation]:
    def register(fn: Operation) -> Operation:
        OPERATIONS[name] = fn
        return fn

    return register


def report(result: Any) -> dict:
    """A BatchResult as the task report: counts and each refused row with its reason."""
    return {"done": result.done_count,
            "refused": [{"label": str(r.label), "reason": str(r.reason)}
                        for r in result.refused]}


def _set(task_id: int, **values: Any) -> None:
    """Write task state on its own connection, so the browser sees progress while the
    operation's own transaction is still open."""
    if "processed" in values and "status" not in values and \
            db.engine.dialect.name == "sqlite":
        return  # SQLite (the inline default) cannot write beside the open transaction
    with db.engine.begin() as conn:
        conn.execute(sa.update(m.BackgroundTask).where(m.BackgroundTask.id == task_id)
                     .values(**values))


def start_task(actor: Actor, name: str, params: dict, total: int) -> m.BackgroundTask:
    """Create the task and run it in a worker (or now, without Redis)."""
    task = m.BackgroundTask(operation=name, user_id=actor.user_id, params=params,
                            total=total, processed=0, status=TS.queued)
    db.session.add(task)
    db.session.commit()
    queue.enqueue(run_task, task.id, job_id=f"task-{task.id}",
                  job_timeout=current_app.config.get("TASK_TIMEOUT", 3600))
    return task


def run_task(task_id: int) -> str:
    """The rq job: run the operation as the user who asked for it; safe to run twice."""
    task = db.session.get(m.BackgroundTask, task_id)
    if task is None or task.status in (TS.done, TS.failed):
        return "skipped"
    user = db.session.get(m.User, task.user_id)
    name, params, total = task.operation, dict(task.params or {}), task.total
    db.session.rollback()
    _set(task_id, status=TS.running)

    def progress(done: int, of: int | None = None) -> None:
        _set(task_id, processed=min(done, of or total), total=max(of or total, done))

    try:
        actor = actor_for_user(user)
        with acting_as(actor):
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
