"""Background jobs on rq + Redis; without REDIS_URL a job runs inline, after the caller's commit.

Jobs are plain functions in `app.jobs` that take ids. `enqueue` is called after the database
commit, so a job never sees uncommitted state; jobs re-read what they need.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from flask import Flask, current_app

log = logging.getLogger(__name__)
# Jobs sent to Redis in one round trip by enqueue_many.
PIPELINE_SIZE = 1000


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

            state.redis = Redis.from_url(url)
            state.queue = Queue(app.config["RQ_QUEUE"], connection=state.redis)
        app.extensions["ciie_queue"] = state

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

    def enqueue(self, func: Callable[..., Any], *args: Any, job_id: str | None = None,
                **rq_options: Any) -> str | None:
        """Run `func(*args)` in a worker (or now, inline). Keyword arguments are rq's options
        (retry, result_ttl…), never the job's. Returns the rq job id."""
        queue = self._state.queue
        if queue is None:
            func(*args)
            return None
        return queue.enqueue(func, args=args, job_id=job_id, **rq_options).id

    def enqueue_many(self, func: Callable[..., Any], calls: list[tuple[tuple, str]],
                     **rq_options: Any) -> None:
        """Run `func(*args)` for each (args, job id) of `calls`: in Redis pipelines of
        PIPELINE_SIZE jobs (a lock's thousands of notices cost a few round trips, not one per
        job), or now, inline. Keyword arguments are rq's options for every job."""
        queue = self._state.queue
        if queue is None:
            for args, _job_id in calls:
                func(*args)
            return
        for start in range(0, len(calls), PIPELINE_SIZE):
            queue.enqueue_many([queue.prepare_data(func, args=args, job_id=job_id, **rq_options)
                                for args, job_id in calls[start:start + PIPELINE_SIZE]])
