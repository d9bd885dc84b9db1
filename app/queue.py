"""Background jobs on rq + Redis; without REDIS_URL a job runs inline, after the caller's commit.

Jobs are plain functions in `app.jobs` that take ids. `enqueue` is called after the database
commit, so a job never sees uncommitted state; jobs re-read what they need.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from flask import Flask

log = logging.getLogger(__name__)


class JobQueue:
    def __init__(self) -> None:
        self.redis = None
        self.queue = None

    def init_app(self, app: Flask) -> None:
        url = app.config.get("REDIS_URL")
        if url:
            from redis import Redis
            from rq import Queue

            self.redis = Redis.from_url(url)
            self.queue = Queue(app.config["RQ_QUEUE"], connection=self.redis)
        else:
            self.redis = None
            self.queue = None
        app.extensions["ciie_queue"] = self

    @property
    def inline(self) -> bool:
        return self.queue is None

    def enqueue(self, func: Callable[..., Any], *args: Any, job_id: str | None = None,
                **kwargs: Any) -> str | None:
        """Run `func(*args, **kwargs)` in a worker (or now, inline). Returns the rq job id."""
        if self.queue is None:
            func(*args, **kwargs)
            return None
        job = self.queue.enqueue(func, *args, job_id=job_id, **kwargs)
        return job.id
