"""A value the API serves from memory and reads again at most once every `ttl_s`, for every request.

The latest weights, the latest scores body and the database check all follow one rule: a request
in the window is answered on the event loop; the first request after it reloads the value on the
thread pool while the others keep getting the value they would have had (nobody queues behind the
reload, unless there is no value yet). A reload that fails keeps serving the last value (a
database blip does not take weights away from validators; `/health` reports it), or raises when
there is none.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)


class Revalidated[T]:
    def __init__(self, load: Callable[[T | None], T | None], ttl_s: float, what: str) -> None:
        """`load(current)` is blocking and returns the new value (None: there is none), given the
        current one (to reuse it when unchanged)."""
        self._load = load
        self._ttl_s = ttl_s
        self._what = what
        self._value: T | None = None
        self._checked_at: float | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> T | None:
        if self._fresh() or (self._lock.locked() and self._checked_at is not None):
            return self._value
        async with self._lock:
            if not self._fresh():
                try:
                    self._value = await run_in_threadpool(self._load, self._value)
                except Exception:
                    if self._value is None:
                        raise
                    log.exception("%s: reading it again failed; serving the one read before", self._what)
                self._checked_at = time.monotonic()
        return self._value

    def peek(self) -> T | None:
        """The value when `get()` would return it without waiting; None when a caller must await `get()`."""
        if self._value is not None and (self._fresh() or self._lock.locked()):
            return self._value
        return None

    def _fresh(self) -> bool:
        return self._checked_at is not None and time.monotonic() - self._checked_at < self._ttl_s
