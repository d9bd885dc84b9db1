"""Short-lived values for one-time codes and throttles: Redis (shared by every app process and
worker), or, in the embedded default without Redis, this process's memory."""
from __future__ import annotations

import threading
import time
from typing import Protocol

from flask import current_app


class CodeStore(Protocol):
    def put(self, key: str, value: str, ttl: int) -> None: ...
    def get(self, key: str) -> str | None: ...
    def delete(self, key: str) -> None: ...
    def incr(self, key: str, ttl: int) -> int: ...
    def claim(self, key: str, ttl: int) -> bool: ...


class RedisCodeStore:
    def __init__(self, redis) -> None:
        self.redis = redis

    def put(self, key: str, value: str, ttl: int) -> None:
        self.redis.set(key, value, ex=ttl)

    def get(self, key: str) -> str | None:
        value = self.redis.get(key)
        return value.decode() if value is not None else None

    def delete(self, key: str) -> None:
        self.redis.delete(key)

    def incr(self, key: str, ttl: int) -> int:
        pipe = self.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, ttl, nx=True)
        return int(pipe.execute()[0])

    def claim(self, key: str, ttl: int) -> bool:
        """True if the key was free (and is now taken for ttl seconds)."""
        return bool(self.redis.set(key, "1", ex=ttl, nx=True))


class MemoryCodeStore:
    """Single-process fallback for the embedded default (development server)."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _live(self, key: str) -> str | None:
        item = self._data.get(key)
        if item is None or item[1] < time.monotonic():
            self._data.pop(key, None)
            return None
        return item[0]

    def put(self, key: str, value: str, ttl: int) -> None:
        with self._lock:
            self._data[key] = (value, time.monotonic() + ttl)

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._live(key)

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def incr(self, key: str, ttl: int) -> int:
        with self._lock:
            current = self._live(key)
            expires = self._data[key][1] if current is not None else time.monotonic() + ttl
            value = int(current or 0) + 1
            self._data[key] = (str(value), expires)
            return value

    def claim(self, key: str, ttl: int) -> bool:
        with self._lock:
            if self._live(key) is not None:
                return False
            self._data[key] = ("1", time.monotonic() + ttl)
            return True


def code_store() -> CodeStore:
    store = current_app.extensions.get("ciie_codes")
    if store is None:
        from app.extensions import queue

        store = RedisCodeStore(queue.redis) if queue.redis is not None else MemoryCodeStore()
        current_app.extensions["ciie_codes"] = store
    return store
