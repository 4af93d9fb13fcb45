"""Serialized `/v1/scores` bodies, built once per version of a cycle's scores, not per request.

A cycle of 256 miners × 8 envs is a ~170 KB body from 2,048 score rows and 256 Pareto rows;
building it took ~20 ms a request. Scores are written a few times a cycle at most, so a body is
kept with the `ScoresVersion` it was built from. The newest scored cycle's version is read at
most once every `ttl_s` (one indexed read), and the body is served from memory on the event loop
in between; a given cycle's version is read on every request, which costs the same one read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from kinitro_dagster.warehouse import Warehouse, WarehouseUnavailable
from kinitro_dagster.warehouse.records import ScoresVersion
from weights_api.cache import LATEST_TTL_S, SerializedBody
from weights_api.models import ScoresResponse
from weights_api.revalidated import Revalidated

CACHED_CYCLES = 16  # bodies kept, least recently served dropped first (~170 KB each at full size)
_BUILD_ATTEMPTS = 3  # rebuilds when the scores are rewritten while being read


class ScoresCache:
    def __init__(self, warehouse: Warehouse, ttl_s: float = LATEST_TTL_S) -> None:
        self._warehouse = warehouse
        self._bodies: OrderedDict[str, SerializedBody] = OrderedDict()
        self._bodies_lock = threading.Lock()  # cycle bodies are read from the thread pool
        self._latest = Revalidated(lambda _cached: self.body(None), ttl_s, "latest scores")

    async def latest(self) -> SerializedBody | None:
        """The newest scored cycle's body; None when no cycle has scores.

        Raises what the warehouse raised when it cannot be read and nothing is cached; with a body
        cached, a failed check serves it (as the latest weights do through a database blip)."""
        return await self._latest.get()

    def body(self, cycle_key: str | None) -> SerializedBody | None:
        """`cycle_key`'s scores body (the newest scored cycle's when None); None without scores.
        Blocking: call it from the thread pool."""
        for _ in range(_BUILD_ATTEMPTS):
            version = self._warehouse.scores_version(cycle_key)
            if version is None:
                return None
            cached = self._cached(version)
            if cached is not None:
                return cached
            built = self._build(version)
            # The rows are read in separate statements: keep the body only if no rewrite of the
            # scores committed in between (it would mix two revisions).
            if self._warehouse.scores_version(version.cycle_key) == version:
                with self._bodies_lock:
                    self._bodies[version.cycle_key] = built
                    while len(self._bodies) > CACHED_CYCLES:
                        self._bodies.popitem(last=False)
                return built
        raise WarehouseUnavailable(f"the scores of cycle {cycle_key or 'latest'} are being rewritten; retry")

    def _cached(self, version: ScoresVersion) -> SerializedBody | None:
        with self._bodies_lock:
            cached = self._bodies.get(version.cycle_key)
            if cached is None or cached.version != version:
                return None
            self._bodies.move_to_end(version.cycle_key)
            return cached

    def _build(self, version: ScoresVersion) -> SerializedBody:
        store = self._warehouse
        cycle = store.get_cycle(version.cycle_key)
        if cycle is None:  # deleted between the two reads
            raise WarehouseUnavailable(f"cycle {version.cycle_key} was removed while its scores were read; retry")
        scores: dict[str, dict[str, float]] = {}
        for uid, env_id, rate in store.success_rates(version.cycle_key):
            scores.setdefault(str(uid), {})[env_id] = rate
        pareto = store.pareto_scores(version.cycle_key)
        response = ScoresResponse(
            cycle_id=version.cycle_key,
            block=cycle.block,
            status=version.status.value,
            scores=scores,
            pareto_frontier=[p.uid for p in pareto if p.on_frontier],
            points={str(p.uid): p.points for p in pareto},
            weights={str(p.uid): p.weight for p in pareto},
            thresholds={str(p.uid): p.thresholds for p in pareto},
            created_at=version.completed_at or cycle.opened_at,
        )
        return SerializedBody.of(version, response.model_dump_json().encode())
