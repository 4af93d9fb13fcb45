"""The fast path of `GET /v1/weights/latest`: a serialized body, revalidated at most once a second.

Validators poll this endpoint; weights change once a cycle. The response body, its ETag and its
headers are built once per (cycle, created_at). At most once every `ttl_s` one request asks the
warehouse whether a newer row exists (an index probe on `weights.block`, run in the thread pool);
every other request is served from memory on the event loop without touching the database.

`LatestWeightsFastPath` answers those in-memory requests in front of FastAPI's router: routing,
dependency solving and response classes would otherwise cost more than the rest of the request.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Hashable
from dataclasses import dataclass
from functools import cached_property

from starlette.types import ASGIApp, Receive, Scope, Send

from kinitro_dagster.audit.attestation import attested_fields
from kinitro_dagster.warehouse import Warehouse
from kinitro_dagster.warehouse.records import WeightsRecord
from weights_api.models import WeightsMetadata, WeightsResponse, WeightsU16
from weights_api.revalidated import Revalidated

log = logging.getLogger(__name__)


LATEST_PATH = "/v1/weights/latest"
LATEST_CACHE_CONTROL = "no-cache"  # clients may keep the body but must revalidate (ETag) before using it
LATEST_TTL_S = 1.0  # how long a served latest body (weights, scores) is trusted before the warehouse is asked again


@dataclass(frozen=True)
class SerializedBody:
    """A JSON response body built once, with the version of what it was built from and its ETag."""

    version: Hashable  # latest weights: (cycle_key, created_at); scores: a ScoresVersion
    body: bytes
    etag: str

    @classmethod
    def of(cls, version: Hashable, body: bytes) -> SerializedBody:
        return cls(version=version, body=body, etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"')

    @cached_property
    def headers_304(self) -> list[tuple[bytes, bytes]]:
        """ASGI headers of the latest-weights path's 304 (what the FastAPI route sends too)."""
        return [(b"etag", self.etag.encode()), (b"cache-control", LATEST_CACHE_CONTROL.encode())]

    @cached_property
    def headers_200(self) -> list[tuple[bytes, bytes]]:
        return [
            *self.headers_304,
            (b"content-length", str(len(self.body)).encode()),
            (b"content-type", b"application/json"),
        ]


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
        **attested_fields(record.attestation),
    )


def serialize_weights(record: WeightsRecord) -> SerializedBody:
    return SerializedBody.of((record.cycle_key, record.created_at), weights_response(record).model_dump_json().encode())


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
    def __init__(self, warehouse: Warehouse, ttl_s: float = LATEST_TTL_S) -> None:
        self._warehouse = warehouse
        self._latest = Revalidated(self._read, ttl_s, "latest weights")

    async def get(self) -> SerializedBody | None:
        """The latest weights, serialized; None when none were ever published.

        Raises whatever the warehouse raised if it cannot be read and nothing is cached yet;
        with something cached, a failed revalidation serves the cached weights (validators keep
        getting the last published weights through a database blip; /health reports it).
        """
        return await self._latest.get()

    def peek(self) -> SerializedBody | None:
        """The cached weights when `get()` would return them without waiting (fresh, or being
        revalidated by another request); None when a caller has to go through `get()`."""
        return self._latest.peek()

    def _read(self, cached: SerializedBody | None) -> SerializedBody | None:
        version = self._warehouse.latest_weights_version()
        if version is None:
            return None
        if cached is not None and cached.version == version:
            return cached
        record = self._warehouse.weights_for_cycle(version[0])
        if record is None:
            return None
        log.info("latest weights changed",
                 extra={"cycle_key": record.cycle_key, "block": record.block, "miners": len(record.weights)})
        return serialize_weights(record)


class LatestWeightsFastPath:
    """Pure ASGI: answers `GET /v1/weights/latest` (and its 304) from the cache.

    Only when `LatestWeightsCache.peek()` has the weights; every other case (stale cache, nothing
    published, a database error, any other path or method) goes on to the app, whose route
    revalidates and answers 200, 404 or 503. `route` is set in the scope so request metrics label
    these requests like the route's.
    """

    def __init__(self, app: ASGIApp, cache: LatestWeightsCache, route: object | None = None) -> None:
        self.app = app
        self.cache = cache
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = None
        if scope["type"] == "http" and scope["path"] == LATEST_PATH and scope["method"] == "GET":
            entry = self.cache.peek()
        if entry is None:
            await self.app(scope, receive, send)
            return
        if self.route is not None:
            scope["route"] = self.route
        if etag_matches(_header(scope, b"if-none-match"), entry.etag):
            await send({"type": "http.response.start", "status": 304, "headers": entry.headers_304})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": entry.headers_200})
        await send({"type": "http.response.body", "body": entry.body})


def _header(scope: Scope, name: bytes) -> str | None:
    values = [value.decode("latin-1") for key, value in scope["headers"] if key.lower() == name]
    return ", ".join(values) if values else None  # repeated headers are one comma-separated list
