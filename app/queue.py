"""Background jobs on rq + Redis; without REDIS_URL a job runs inline, after the caller's commit.

Jobs are plain functions in `app.jobs` that take ids; the workflow names them by their dotted
path ("app.jobs.send_refund", as rq takes them), so it never imports the jobs that import it.
`enqueue` is called after the database commit, so a job never sees uncommitted state; jobs
re-read what they need.

The rows a job works on (notifications, tasks) are its outbox: with `outbox=True` a Redis that
does not answer is logged and the request goes on (the user is told the messages will follow),
and `flask ciie sweep` enqueues what is still waiting once Redis is back (app/sweeper.py).
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any, Callable

from flask import Flask, current_app, flash, g, has_request_context, request
from flask_babel import gettext as _
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)
# Jobs sent to Redis in one round trip by enqueue_many.
PIPELINE_SIZE = 1000
# A Redis that does not answer fails fast instead of holding the request (connecting only:
# a worker's blocking dequeue must keep its longer read timeout).
CONNECT_TIMEOUT = 3
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError)
# A job: the function, or its dotted path ("app.jobs.send_refund").
JobRef = Callable[..., Any] | str


def job_function(func: JobRef) -> Callable[..., Any]:
    """The function of a job given by its dotted path (imported when it runs), or itself."""
    if not isinstance(func, str):
        return func
    module, _, name = func.rpartition(".")
    return getattr(importlib.import_module(module), name)


class QueueUnavailable(Exception):
    """Redis did not answer: the job was not enqueued."""


@dataclass
class _AppQueue:
    redis: Any = None
    queue: Any = None


class JobQueue:
    """One extension object; each app keeps its own connection (tests run several apps)."""

    def init_app(self, app: Flask) -> None:
        state = _AppQueue()
        url = app.config.get("REDIS_URL")
        if url:
            from redis import Redis
            from rq import Queue

            state.redis = Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT)
            state.queue = Queue(app.config["RQ_QUEUE"], connection=state.redis)
        app.extensions["ciie_queue"] = state
        app.after_request(_tell_deferred)

    @property
    def _state(self) -> _AppQueue:
        return current_app.extensions["ciie_queue"]

    @property
    def redis(self):
        return self._state.redis

    @property
    def queue(self):
        return self._state.queue

    @property
    def inline(self) -> bool:
        return self._state.queue is None

    def enqueue(self, func: JobRef, *args: Any, job_id: str | None = None,
                outbox: bool = False, **rq_options: Any) -> str | None:
        """Run `func(*args)` in a worker (or now, inline). Keyword arguments are rq's options
        (retry, result_ttl…), never the job's. Returns the rq job id.

        When Redis does not answer: QueueUnavailable, or with `outbox` (the job's row is in
        the database and the sweeper will enqueue it) a warning for the user, and None."""
        queue = self._state.queue
        if queue is None:
            job_function(func)(*args)
            return None
        try:
            return queue.enqueue(func, args=args, job_id=job_id, **rq_options).id
        except REDIS_ERRORS as exc:
            _unavailable(exc, outbox)
            return None

    def enqueue_many(self, func: JobRef, calls: list[tuple[tuple, str]],
                     outbox: bool = False, **rq_options: Any) -> None:
        """Run `func(*args)` for each (args, job id) of `calls`: in Redis pipelines of
        PIPELINE_SIZE jobs (a lock's thousands of notices cost a few round trips, not one per
        job), or now, inline. Keyword arguments are rq's options for every job; `outbox` as
        for `enqueue`."""
        queue = self._state.queue
        if queue is None:
            run = job_function(func)
            for args, _job_id in calls:
                run(*args)
            return
        try:
            for start in range(0, len(calls), PIPELINE_SIZE):
                queue.enqueue_many([
                    queue.prepare_data(func, args=args, job_id=job_id, **rq_options)
                    for args, job_id in calls[start:start + PIPELINE_SIZE]])
        except REDIS_ERRORS as exc:
            _unavailable(exc, outbox)


def _unavailable(exc: Exception, outbox: bool) -> None:
    if not outbox:
        raise QueueUnavailable(str(exc)) from exc
    log.warning("queue unavailable, left in the outbox for the sweeper: %s", exc)
    if has_request_context():
        g.ciie_queue_deferred = True


def _tell_deferred(response):
    """The work was saved but its jobs wait for Redis: say so on the next page the user sees
    (the API's JSON answers are left as they are)."""
    if g.pop("ciie_queue_deferred", False) and not request.path.startswith("/api/") \
            and response.mimetype == "text/html":
        flash(_("The background queue is not answering: this action was saved, and its "
                "messages and tasks will go out as soon as the queue is back."), "warning")
    return response
