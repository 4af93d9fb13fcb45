"""Prometheus metrics: evaluation facts read from the warehouse at scrape time, plus request metrics.

Evaluation metrics are computed from the warehouse on every scrape (a collector), so they are
right whichever process ran the cycle and survive API restarts. Each app has its own registry.

`kinitro_miner_scores` has a sample per miner and environment (2,048 at 256 miners × 8 envs);
building and formatting those costs ~15 ms a scrape, so the collector keeps the last rendering and
reuses it while the success rates it was made from are unchanged (compared on every scrape, so
it is never stale). `exposition()` writes such a pre-rendered family as is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kinitro_dagster.warehouse import Warehouse
from kinitro_dagster.warehouse.records import CommitmentStatus

log = logging.getLogger(__name__)

# Cycles take minutes to hours.
DURATION_BUCKETS = (60.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0, float("inf"))
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, float("inf"))


class RenderedMetric(Metric):
    """A metric family together with its text exposition, rendered once."""

    def __init__(self, family: Metric) -> None:
        super().__init__(family.name, family.documentation, family.type, family.unit)
        self.samples = family.samples  # still a complete Metric for any other exposition
        self.text = generate_latest(_Only(family))


class _Only(Collector):
    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def collect(self) -> Iterator[Metric]:
        yield self._metric


def exposition(registry: Collector) -> bytes:
    """`generate_latest(registry)`, byte for byte, with pre-rendered families copied as they are
    (the text format is one block per family, so rendering family by family joins to the same)."""
    return b"".join(
        metric.text if isinstance(metric, RenderedMetric) else generate_latest(_Only(metric))
        for metric in registry.collect()
    )


class WarehouseCollector(Collector):
    """kinitro_eval_cycles_total, kinitro_eval_duration_seconds, kinitro_miners_active,
    kinitro_miner_scores{uid,env} and freshness gauges, from the warehouse."""

    def __init__(self, warehouse: Warehouse) -> None:
        self._warehouse = warehouse
        # (success rates, their rendered family): replaced whole, so concurrent scrapes are safe
        self._scores_memo: tuple[list[tuple[int, str, float]], RenderedMetric] | None = None

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("kinitro_warehouse_up", "1 if the warehouse answered this scrape, else 0")
        try:
            families = list(self._families())
        except Exception as exc:  # a scrape must not fail because the database is down
            log.warning("metrics: warehouse unavailable", extra={"error": str(exc)})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterator[Metric]:
        w = self._warehouse
        cycles = CounterMetricFamily(
            "kinitro_eval_cycles", "Evaluation cycles recorded in the warehouse, by status", labels=["status"]
        )
        for status, count in sorted(w.count_cycles().items()):
            cycles.add_metric([status], count)
        yield cycles

        durations = w.weights_durations()
        buckets = [(_le(b), sum(d <= b for d in durations)) for b in DURATION_BUCKETS]
        yield HistogramMetricFamily(
            "kinitro_eval_duration_seconds",
            "Duration of evaluation cycles that published weights (cycle opened -> weights written)",
            buckets=buckets,
            sum_value=sum(durations),
        )

        latest = w.latest_cycle_with_commitments()
        active = GaugeMetricFamily(
            "kinitro_miners_active", "Miners with a valid, evaluated commitment in the latest cycle"
        )
        active.add_metric([], w.count_commitments(latest.cycle_key, CommitmentStatus.OK) if latest else 0)
        yield active

        scored = w.latest_scored_cycle()
        yield self._miner_scores(w.success_rates(scored.cycle_key) if scored else [])

        newest = w.latest_cycle()
        if newest is not None:
            opened = GaugeMetricFamily(
                "kinitro_last_cycle_opened_timestamp_seconds",
                "When the latest cycle opened (alert when older than 2x the eval interval)",
            )
            opened.add_metric([], newest.opened_at.timestamp())
            yield opened
        weights = w.latest_weights()
        if weights is not None:
            block = GaugeMetricFamily("kinitro_latest_weights_block", "Block of the latest published weights")
            block.add_metric([], weights.block)
            yield block

    def _miner_scores(self, rates: list[tuple[int, str, float]]) -> RenderedMetric:
        memo = self._scores_memo
        if memo is not None and memo[0] == rates:
            return memo[1]
        scores = GaugeMetricFamily(
            "kinitro_miner_scores",
            "Success rate per miner and environment in the latest scored cycle",
            labels=["uid", "env"],
        )
        for uid, env_id, rate in rates:
            scores.add_metric([str(uid), env_id], rate)
        rendered = RenderedMetric(scores)
        self._scores_memo = (rates, rendered)
        return rendered


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class RequestMetrics:
    """Request counter and latency histogram; label children are cached (labels() takes a lock)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.requests = Counter(
            "kinitro_api_requests",
            "HTTP requests served, by route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "kinitro_api_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(method, route, str(status)), self.latency.labels(method, route))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class RequestMetricsMiddleware:
    """Pure ASGI (no per-request task or body buffering, unlike BaseHTTPMiddleware).

    Labels use the matched route's template (`/v1/weights/{block}`), so a scan of block numbers
    cannot blow up the number of series.
    """

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"] if scope["method"] in _METHODS else "other"  # bounded label values
            self.metrics.observe(method, route, status, time.perf_counter() - started)
