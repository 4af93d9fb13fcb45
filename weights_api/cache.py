"""The fast path of `GET /v1/weights/latest`: a serialized body, revalidated at most once a second.

Validators poll this endpoint; weights change once a cycle. The response body and its ETag are
built once per (cycle, created_at). At most once every `ttl_s` one request asks the warehouse
whether a newer row exists (an index probe on `weights.block`, run in the thread pool); every
other request is served from memory on the event loop without touching the database.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime

from starlette.concurrency import run_in_threadpool

from kinitro_dagster.warehouse import Warehouse
from kinitro_dagster.warehouse.records import WeightsRecord
from weights_api.models import WeightsMetadata, WeightsResponse, WeightsU16

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SerializedWeights:
    version: tuple[str, datetime]  # (cycle_key, created_at)
    body: bytes
    etag: str


def weights_response(record: WeightsRecord) -> WeightsResponse:
    return WeightsResponse(
        cycle_id=record.cycle_key,
        block=record.block,
        block_number=record.block,
        weights={str(uid): w for uid, w in sorted(record.weights.items())},
        weights_u16=WeightsU16(uids=record.u16_uids, values=record.u16_values),
        created_at=record.created_at,
        timestamp=record.created_at,
        metadata=WeightsMetadata(
            n_miners_evaluated=record.n_miners,
            n_environments=record.n_envs,
            evaluation_duration_seconds=record.duration_seconds,
        ),
    )


def serialize_weights(record: WeightsRecord) -> SerializedWeights:
    body = weights_response(record).model_dump_json().encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return SerializedWeights(version=(record.cycle_key, record.created_at), body=body, etag=etag)


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison against an If-None-Match header (a list, or '*')."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


class LatestWeightsCache:
    def __init__(self, warehouse: Warehouse, ttl_s: float = 1.0) -> None:
        self._warehouse = warehouse
        self._ttl_s = ttl_s
        self._entry: SerializedWeights | None = None
        self._checked_at: float | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> SerializedWeights | None:
        """The latest weights, serialized; None when none were ever published.

        Raises whatever the warehouse raised if it cannot be read and nothing is cached yet;
        with something cached, a failed revalidation serves the cached weights (validators keep
        getting the last published weights through a database blip; /health reports it).
        """
        if self._fresh():
            return self._entry
        if self._lock.locked() and self._checked_at is not None:
            return self._entry  # another request is revalidating; don't queue behind it
        async with self._lock:
            if not self._fresh():
                await run_in_threadpool(self._revalidate)
        return self._entry

    def _fresh(self) -> bool:
        return self._checked_at is not None and time.monotonic() - self._checked_at < self._ttl_s

    def _revalidate(self) -> None:
        try:
            version = self._warehouse.latest_weights_version()
            if version is None:
                self._entry = None
            elif self._entry is None or self._entry.version != version:
                record = self._warehouse.weights_for_cycle(version[0])
                self._entry = serialize_weights(record) if record else None
                if record:
                    log.info(
                        "latest weights changed",
                        extra={"cycle_key": record.cycle_key, "block": record.block, "miners": len(record.weights)},
                    )
        except Exception:
            if self._entry is None:
                raise
            log.exception("latest weights: revalidation failed; serving the cached weights")
        self._checked_at = time.monotonic()
