"""Whether the warehouse answers, as `/health` reports it: checked at most once every `ttl_s`.

Load balancers and monitors poll `/health` at whatever rate they like; a database round trip per
request, on the thread pool, made it slower than the latest weights. One check is shared by every
request in its window, so a report is at most `ttl_s` old.
"""

from __future__ import annotations

from kinitro_dagster.warehouse import Warehouse, WarehouseUnavailable
from weights_api.revalidated import Revalidated

HEALTH_TTL_S = 1.0


class DatabaseCheck:
    def __init__(self, warehouse: Warehouse, ttl_s: float = HEALTH_TTL_S) -> None:
        self._warehouse = warehouse
        self._last = Revalidated(self._check, ttl_s, "the database check")

    async def error(self) -> str | None:
        """None when the database answered the latest check; otherwise why it cannot be used."""
        return await self._last.get()

    def _check(self, _previous: str | None) -> str | None:
        try:
            self._warehouse.ping()
        except WarehouseUnavailable as exc:
            return str(exc)
        return None
