"""Reads of lists, counts and exports on a PostgreSQL streaming replica (DATABASE_REPLICA_URL),
everything else on the primary.

Routing happens per statement in the session's `do_orm_execute` hook: a SELECT goes to the
replica only when the request (or task) asked for replica reads, has not written, touches no
security table (users, roles and permissions are always read where they are changed), and the
replica is healthy: reachable, in recovery, lagging less than REPLICA_MAX_LAG, and — for a user
who just wrote — already replayed past the LSN of that user's last commit, which the session
cookie carries (read-your-writes). Any failure of the replica falls back to the primary.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

import sqlalchemy as sa
from flask import Flask, current_app, has_app_context, has_request_context, request, session
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import ORMExecuteState, Session

from app.extensions import db

log = logging.getLogger(__name__)

EXTENSION = "ciie_replica"
# The cookie key holding the primary's WAL position after the user's last write.
COOKIE_LSN = "replica_lsn"
# session.info keys: asked for replica reads / wrote / committed in this scope / decided
# whether the replica may answer.
READS, WROTE, COMMITTED, USABLE = ("replica_reads", "replica_wrote", "replica_committed",
                                   "replica_usable")

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_STATUS = sa.text(
    "SELECT pg_is_in_recovery() AS recovering, pg_last_wal_replay_lsn()::text AS replayed, "
    "CASE WHEN pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0 "
    "ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END AS lag")


def lsn_value(lsn: str | None) -> int:
    """A PostgreSQL LSN ('16/B374D848') as a number that orders like the WAL."""
    if not lsn:
        return 0
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


class ReplicaRouter:
    """The replica's engine and its health, checked at most every REPLICA_CHECK_INTERVAL
    seconds per process (one statement on the replica), so routing adds no statement to a
    page."""

    def __init__(self, app: Flask) -> None:
        options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
        options.setdefault("pool_pre_ping", True)
        # A replica that does not answer must not hold a page for long: the primary answers.
        options["connect_args"] = {**options.get("connect_args", {}),
                                   "connect_timeout": app.config["REPLICA_CONNECT_TIMEOUT"]}
        self.engine: Engine = sa.create_engine(app.config["DATABASE_REPLICA_URL"], **options)
        self.max_lag = float(app.config["REPLICA_MAX_LAG"])
        self.interval = float(app.config["REPLICA_CHECK_INTERVAL"])
        self.checked_at = float("-inf")
        self.healthy = False
        self.replayed = 0
        self.reason = "not checked yet"
        self.lock = threading.Lock()

    def check(self) -> None:
        """Read the replica's state now (its replay position and lag)."""
        try:
            with self.engine.connect() as conn:
                row = conn.execute(_STATUS).one()
        except sa.exc.DBAPIError as exc:
            self._set(False, f"unreachable: {exc.orig or exc}".splitlines()[0])
            return
        finally:
            self.checked_at = time.monotonic()
        self.replayed = max(self.replayed, lsn_value(row.replayed))
        if not row.recovering:
            self._set(False, "not in recovery (promoted?)")
        elif float(row.lag or 0) > self.max_lag:
            self._set(False, f"lagging {float(row.lag):.1f} s > REPLICA_MAX_LAG")
        else:
            self._set(True, "streaming")

    def _set(self, healthy: bool, reason: str) -> None:
        # Log changes only: a replica down for an hour must not write a line per page.
        if healthy != self.healthy or (not healthy and reason != self.reason):
            if healthy:
                log.warning("read replica in use again: %s", reason)
            else:
                log.warning("read replica not used, the primary answers: %s", reason)
        self.healthy, self.reason = healthy, reason

    def usable(self, lsn: str | None = None) -> bool:
        """Whether reads may go to the replica now: healthy and replayed past `lsn`."""
        if time.monotonic() - self.checked_at >= self.interval:
            with self.lock:
                if time.monotonic() - self.checked_at >= self.interval:
                    self.check()
        return self.healthy and self.replayed >= lsn_value(lsn)

    def mark_down(self, exc: BaseException) -> None:
        self.checked_at = time.monotonic()
        self._set(False, f"failed a query: {exc}".splitlines()[0])

    def wait_replayed(self, lsn: str) -> bool:
        """Wait up to REPLICA_MAX_LAG for the replica to replay `lsn` (a task that must see
        everything committed before it started); False if it did not."""
        deadline = time.monotonic() + self.max_lag
        while True:
            self.check()
            if self.healthy and self.replayed >= lsn_value(lsn):
                return True
            if not self.healthy or time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def router() -> ReplicaRouter | None:
    """The current app's replica router, None without a replica (the default)."""
    return current_app.extensions.get(EXTENSION) if has_app_context() else None


def primary_lsn() -> str:
    """The primary's current WAL position (after a commit: at or past that commit)."""
    with db.engine.connect() as conn:
        return conn.execute(sa.text("SELECT pg_current_wal_lsn()::text")).scalar_one()


@contextmanager
def replica_reads() -> Iterator[None]:
    """Let the current session's reads go to the replica (a background export): it waits for
    the replica to replay what the primary had committed when the task started, else the
    primary answers."""
    replica = router()
    if replica is None:
        yield
        return
    info = db.session.info
    # A task starts on a rolled-back session: what earlier jobs of this worker wrote is
    # committed, and the wait below covers it.
    info.pop(WROTE, None)
    info[READS] = True
    info[USABLE] = replica.wait_replayed(primary_lsn())
    try:
        yield
    finally:
        for key in (READS, USABLE):
            info.pop(key, None)


def _usable(replica: ReplicaRouter, state: ORMExecuteState) -> bool:
    info = state.session.info
    if USABLE not in info:
        lsn = session.get(COOKIE_LSN) if has_request_context() else None
        info[USABLE] = replica.usable(lsn)
        if info[USABLE] and lsn:
            session.pop(COOKIE_LSN, None)  # replayed: this user's reads need not wait again
    return info[USABLE]


def _route(state: ORMExecuteState) -> Any:
    replica = router()
    if replica is None:
        return None
    info = state.session.info
    if not state.is_select:
        info[WROTE] = True  # UPDATE/DELETE/INSERT, or text() we cannot read: stay on primary
        return None
    if (not info.get(READS) or info.get(WROTE)
            or getattr(state.statement, "_for_update_arg", None) is not None
            or any(mp.local_table.name.startswith("ab_") for mp in state.all_mappers)
            or not _usable(replica, state)):
        return None
    try:
        return state.invoke_statement(bind_arguments={"bind": replica.engine})
    except sa.exc.DBAPIError as exc:
        if not (exc.connection_invalidated or isinstance(exc, sa.exc.OperationalError)):
            raise
        replica.mark_down(exc)
        info[USABLE] = False
        return state.invoke_statement(bind_arguments={"bind": db.engine})


def _after_flush(session_: Session, _context: Any) -> None:
    session_.info[WROTE] = True


def _after_commit(session_: Session) -> None:
    session_.info[COMMITTED] = True


def init_replica(app: Flask, appbuilder: Any) -> None:
    """With DATABASE_REPLICA_URL: the replica's engine, and the endpoints whose GETs read
    there (every scoped list and count page, every REST API's list)."""
    if not app.config.get("DATABASE_REPLICA_URL"):
        return
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        raise RuntimeError("DATABASE_REPLICA_URL needs a PostgreSQL primary (DATABASE_URL)")
    from flask_appbuilder import ModelView
    from flask_appbuilder.api import ModelRestApi

    app.extensions[EXTENSION] = ReplicaRouter(app)
    # By FAB's base classes: this helper sits below the views (docs/architecture.md). FAB's
    # own model views list users and roles, which the security-table rule keeps on the primary.
    endpoints = set()
    for view in appbuilder.baseviews:
        if isinstance(view, ModelView):
            endpoints |= {f"{view.endpoint}.list", f"{view.endpoint}.count"}
        elif isinstance(view, ModelRestApi):
            endpoints.add(f"{view.endpoint}.get_list")
    app.extensions[EXTENSION].endpoints = frozenset(endpoints & set(app.view_functions))

    for name, listener in (("do_orm_execute", _route), ("after_flush", _after_flush),
                           ("after_commit", _after_commit)):
        if not event.contains(db.session, name, listener):
            event.listen(db.session, name, listener)

    @app.before_request
    def _reads_on_replica() -> None:
        if request.method == "GET" and request.endpoint in app.extensions[EXTENSION].endpoints:
            db.session.info[READS] = True

    @app.after_request
    def _remember_write(response: Any) -> Any:
        # The user's next reads wait for the replica to replay this position. A POST counts
        # as a write even when it wrote beside the ORM (COPY, a raw connection).
        info = db.session.info
        if info.get(COMMITTED) and (info.get(WROTE) or request.method not in SAFE_METHODS):
            try:
                session[COOKIE_LSN] = primary_lsn()
            except sa.exc.DBAPIError:
                log.warning("primary's WAL position not read; reads stay on the primary "
                            "until the replica passes the next write", exc_info=True)
        return response
