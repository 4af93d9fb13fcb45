"""Whether the warehouse answers, as `/health` reports it: checked at most once every `ttl_s`.

Load balancers and monitors poll `/health` at whatever rate they like; a database round trip per
request, on the thread pool, made it slower than the latest weights. One check is shared by every
request in its window, so a report is at most `ttl_s` old.
"""

from __future__ import annotations

import asyncio
import time

from starlette.concurrency import run_in_threadpool

from kinitro_dagster.warehouse import Warehouse, WarehouseUnavailable

HEALTH_TTL_S = 1.0


class DatabaseCheck:
    def __init__(self, warehouse: Warehouse, ttl_s: float = HEALTH_TTL_S) -> None:
        self._warehouse = warehouse
        self._ttl_s = ttl_s
        self._error: str | None = None
        self._checked_at: float | None = None
        self._lock = asyncio.Lock()

    async def error(self) -> str | None:
        """None when the database answered the latest check; otherwise why it cannot be used."""
        if self._fresh() or (self._lock.locked() and self._checked_at is not None):
            return self._error
        async with self._lock:
            if not self._fresh():
                try:
                    await run_in_threadpool(self._warehouse.ping)
                    self._error = None
                except WarehouseUnavailable as exc:
                    self._error = str(exc)
                self._checked_at = time.monotonic()
        return self._error

    def _fresh(self) -> bool:
        return self._checked_at is not None and time.monotonic() - self._checked_at < self._ttl_s
