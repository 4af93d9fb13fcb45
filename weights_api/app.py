"""The weights API: a thin, read-only FastAPI app over the warehouse (DESIGN §9).

Validators poll `/v1/weights/latest`; operators and dashboards read the rest. Nothing here
writes the warehouse. Endpoints that query the database are plain `def` (FastAPI runs them in
its thread pool); the latest-weights path is `async` and normally never leaves the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import FastAPI, HTTPException, Path, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from kinitro_dagster.settings import ApiSettings, SchedulerSettings
from kinitro_dagster.sim.registry import ENV_IDS, env_family, env_task_name, validate_env_ids
from kinitro_dagster.warehouse import Warehouse, WarehouseUnavailable
from kinitro_dagster.warehouse.records import CommitmentStatus, CycleRecord, CycleStatus
from weights_api.cache import (
    LATEST_CACHE_CONTROL,
    LATEST_PATH,
    LatestWeightsCache,
    LatestWeightsFastPath,
    etag_matches,
    serialize_weights,
)
from weights_api.metrics import RequestMetrics, RequestMetricsMiddleware, WarehouseCollector, exposition
from weights_api.models import (
    EnvironmentInfo,
    EnvironmentsResponse,
    ErrorResponse,
    HealthResponse,
    MinerInfo,
    MinersResponse,
    ScoresResponse,
    StatusResponse,
    WeightsResponse,
)

log = logging.getLogger(__name__)

SECONDS_PER_BLOCK = 12  # Bittensor's block time
LATEST_WEIGHTS_TTL_S = 1.0

NOT_FOUND = {404: {"model": ErrorResponse, "description": "Nothing recorded for this yet."}}
UNAVAILABLE = {503: {"model": ErrorResponse, "description": "The warehouse cannot be read."}}

EXAMPLE_BLOCK = 12300  # the guide's example block; the schema's examples use it
MAX_BLOCK = 2**63 - 1  # blocks are stored as BIGINT; SQLite cannot even bind a larger integer
BlockParam = Annotated[
    int, Path(ge=0, le=MAX_BLOCK, description="Chain block at which a cycle opened.", examples=[EXAMPLE_BLOCK])
]
CycleIdParam = Annotated[
    str,
    Path(
        pattern=r"^[0-9]{1,19}$",
        description="Cycle key (zero-padded block, e.g. 0000012300) or the block.",
        examples=[f"{EXAMPLE_BLOCK:010d}", str(EXAMPLE_BLOCK)],
    ),
]


def create_app(
    settings: ApiSettings | None = None,
    *,
    scheduler: SchedulerSettings | None = None,
    warehouse: Warehouse | None = None,
    latest_weights_ttl_s: float = LATEST_WEIGHTS_TTL_S,
) -> FastAPI:
    """Build the app. `scheduler` supplies the eval interval and enabled envs until a cycle has
    recorded its own (after that /v1/status and /v1/environments read the cycle's record);
    `warehouse` lets a caller share an existing store (tests, embedding); `latest_weights_ttl_s`
    is how long a served latest-weights body is trusted before the warehouse is asked again."""
    settings = settings or ApiSettings()
    scheduler = scheduler or SchedulerSettings()
    store = warehouse or Warehouse(settings.database_url)
    env_ids = validate_env_ids(scheduler.env_ids or ENV_IDS)  # published as canonical ids
    latest_cache = LatestWeightsCache(store, ttl_s=latest_weights_ttl_s)

    registry = CollectorRegistry()
    registry.register(WarehouseCollector(store))
    request_metrics = RequestMetrics(registry)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            store.check_schema()
        except (WarehouseUnavailable, sa.exc.SQLAlchemyError) as exc:
            # Keep serving: the database may come up later; /health and 503s say why meanwhile.
            log.error("warehouse not ready at startup", extra={"error": str(exc)})
        yield
        store.dispose()

    app = FastAPI(
        title="Kinitro weights API",
        version="1.0.0",
        description="Read-only view of the evaluation warehouse: weights for validators, scores, miners.",
        lifespan=lifespan,
    )
    app.state.warehouse = store

    @app.exception_handler(WarehouseUnavailable)
    async def warehouse_unavailable(_request: Request, exc: WarehouseUnavailable) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    @app.exception_handler(sa.exc.SQLAlchemyError)
    async def database_error(_request: Request, exc: sa.exc.SQLAlchemyError) -> JSONResponse:
        log.error("database error", extra={"error": str(exc)})
        first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]
        return JSONResponse(status_code=503, content={"detail": f"database error: {first}"})

    # ------------------------------------------------------------------- health and status

    @app.get("/health", response_model=HealthResponse, tags=["Health"], responses={503: {"model": HealthResponse}})
    def health() -> Response | HealthResponse:
        """Liveness and database reachability."""
        try:
            store.ping()
        except WarehouseUnavailable as exc:
            body = HealthResponse(status="unhealthy", database=str(exc))
            return JSONResponse(status_code=503, content=body.model_dump())
        return HealthResponse(status="healthy", database="connected")

    @app.get("/v1/status", response_model=StatusResponse, tags=["Health"], responses=UNAVAILABLE)
    def status() -> StatusResponse:
        """Where the backend is: chain block, last and next cycle, miners, environments."""
        latest = store.latest_cycle()
        head = store.chain_head()
        with_commitments = store.latest_cycle_with_commitments()
        completed = store.latest_cycle(CycleStatus.COMPLETED)
        counts = store.count_cycles()
        current_block = head[0] if head else (latest.block if latest else None)
        return StatusResponse(
            status="running",
            current_block=current_block,
            last_eval_block=latest.block if latest else None,
            next_eval_in_seconds=_next_eval_in_seconds(latest, head, scheduler),
            miners_registered=store.count_commitments(with_commitments.cycle_key) if with_commitments else 0,
            environments_enabled=_cycle_env_ids(latest, env_ids),
            is_evaluating=bool(latest and latest.status == CycleStatus.RUNNING),
            current_cycle_id=latest.cycle_key if latest and latest.status == CycleStatus.RUNNING else None,
            last_completed_cycle_id=completed.cycle_key if completed else None,
            total_cycles=sum(counts.values()),
        )

    # ------------------------------------------------------------------- weights

    @app.get(
        LATEST_PATH,
        response_model=None,
        tags=["Weights"],
        responses={
            200: {"model": WeightsResponse, "description": "The newest cycle's weights."},
            304: {"description": "Unchanged since the ETag given in If-None-Match."},
            **NOT_FOUND,
            **UNAVAILABLE,
        },
    )
    async def latest_weights(request: Request) -> Response:
        """The weights validators should set now (the cycle with the highest block).

        Send the previous response's ETag in `If-None-Match` to get a bodiless 304 until the
        weights change.
        """
        entry = await latest_cache.get()
        if entry is None:
            raise HTTPException(404, "no weights published yet: the first evaluation cycle has not completed")
        headers = {"ETag": entry.etag, "Cache-Control": LATEST_CACHE_CONTROL}
        if etag_matches(request.headers.get("if-none-match"), entry.etag):
            return Response(status_code=304, headers=headers)
        return Response(content=entry.body, media_type="application/json", headers=headers)

    @app.get(
        "/v1/weights/{block}",
        response_model=None,
        tags=["Weights"],
        responses={200: {"model": WeightsResponse}, 304: {"description": "Unchanged."}, **NOT_FOUND, **UNAVAILABLE},
    )
    def weights_at_block(block: BlockParam, request: Request) -> Response:
        """The weights published by the cycle that opened at exactly `block`."""
        record = store.weights_at_block(block)
        if record is None:
            raise HTTPException(404, f"no weights found for block {block}; see /v1/weights/latest")
        entry = serialize_weights(record)
        headers = {"ETag": entry.etag}
        if etag_matches(request.headers.get("if-none-match"), entry.etag):
            return Response(status_code=304, headers=headers)
        return Response(content=entry.body, media_type="application/json", headers=headers)

    # ------------------------------------------------------------------- scores

    def scores_for(cycle: CycleRecord) -> ScoresResponse:
        rates = store.success_rates(cycle.cycle_key)
        if not rates:
            raise HTTPException(
                404, f"cycle {cycle.cycle_key} has no scores yet (status {CycleStatus(cycle.status).value})"
            )
        pareto = store.pareto_scores(cycle.cycle_key)
        scores: dict[str, dict[str, float]] = {}
        for uid, env_id, rate in rates:
            scores.setdefault(str(uid), {})[env_id] = rate
        return ScoresResponse(
            cycle_id=cycle.cycle_key,
            block=cycle.block,
            status=CycleStatus(cycle.status).value,
            scores=scores,
            pareto_frontier=[p.uid for p in pareto if p.on_frontier],
            points={str(p.uid): p.points for p in pareto},
            weights={str(p.uid): p.weight for p in pareto},
            thresholds={str(p.uid): p.thresholds for p in pareto},
            created_at=cycle.completed_at or cycle.opened_at,
        )

    @app.get("/v1/scores/latest", response_model=ScoresResponse, tags=["Scores"], responses=NOT_FOUND | UNAVAILABLE)
    def latest_scores() -> ScoresResponse:
        """Success rates per miner and environment, points and front of the newest scored cycle."""
        cycle = store.latest_scored_cycle()
        if cycle is None:
            raise HTTPException(404, "no cycle has been scored yet")
        return scores_for(cycle)

    @app.get("/v1/scores/{cycle_id}", response_model=ScoresResponse, tags=["Scores"], responses=NOT_FOUND | UNAVAILABLE)
    def cycle_scores(cycle_id: CycleIdParam) -> ScoresResponse:
        """Scores of one cycle, by its key (0000012300) or its block (12300)."""
        cycle = store.get_cycle(cycle_id)
        if cycle is None and int(cycle_id) <= MAX_BLOCK:  # 19 digits can exceed a BIGINT: no such block
            cycle = store.cycle_at_block(int(cycle_id))
        if cycle is None:
            raise HTTPException(404, f"no evaluation cycle {cycle_id}; recent ones are listed by /v1/status")
        return scores_for(cycle)

    # ------------------------------------------------------------------- miners and environments

    @app.get("/v1/miners", response_model=MinersResponse, tags=["Miners & Environments"], responses=UNAVAILABLE)
    def miners() -> MinersResponse:
        """Miners of the latest cycle: their commitment, evaluation status and latest results."""
        cycle = store.latest_cycle_with_commitments()
        if cycle is None:
            return MinersResponse(cycle_id=None, miners=[])
        scored = store.latest_scored_cycle()
        rates: dict[int, list[tuple[str, float]]] = {}
        for uid, env_id, rate in store.success_rates(scored.cycle_key) if scored else []:
            rates.setdefault(uid, []).append((env_id, rate))
        published = store.latest_weights()
        weights = published.weights if published else {}
        out = []
        for c in store.commitments(cycle.cycle_key):
            evaluated = rates.get(c.uid, [])
            out.append(
                MinerInfo(
                    uid=c.uid,
                    hotkey=c.hotkey,
                    status="active" if c.status == CommitmentStatus.OK else CommitmentStatus(c.status).value,
                    repo=c.repo,
                    revision=c.revision,
                    commit_block=c.commit_block,
                    first_seen_block=c.first_seen_block,
                    duplicate_of_uid=c.duplicate_of_uid,
                    reason=c.reason,
                    cycle_id=cycle.cycle_key,
                    last_evaluated=(scored.completed_at or scored.opened_at) if scored and evaluated else None,
                    last_evaluated_block=scored.block if scored and evaluated else None,
                    avg_success_rate=sum(r for _, r in evaluated) / len(evaluated) if evaluated else None,
                    environments_evaluated=[env for env, _ in evaluated],
                    weight=weights.get(c.uid, 0.0) if published else None,
                )
            )
        return MinersResponse(cycle_id=cycle.cycle_key, miners=out)

    @app.get(
        "/v1/environments", response_model=EnvironmentsResponse, tags=["Miners & Environments"], responses=UNAVAILABLE
    )
    def environments() -> EnvironmentsResponse:
        """Enabled environments, with how miners did on them in the newest scored cycle."""
        scored = store.latest_scored_cycle()
        by_env: dict[str, list[float]] = {}
        for _uid, env_id, rate in store.success_rates(scored.cycle_key) if scored else []:
            by_env.setdefault(env_id, []).append(rate)
        return EnvironmentsResponse(
            cycle_id=scored.cycle_key if scored else None,
            environments=[
                EnvironmentInfo(
                    env_id=env_id,
                    env_name=env_family(env_id),
                    task_name=env_task_name(env_id),
                    enabled=True,
                    n_evaluations=len(by_env.get(env_id, [])),
                    avg_success_rate=sum(by_env[env_id]) / len(by_env[env_id]) if by_env.get(env_id) else None,
                )
                for env_id in _cycle_env_ids(scored, env_ids)
            ],
        )

    # ------------------------------------------------------------------- metrics

    @app.get("/metrics", tags=["Health"], response_class=Response)
    def metrics() -> Response:
        """Prometheus exposition: evaluation metrics from the warehouse, request counts and latency."""
        return Response(content=exposition(registry), media_type=CONTENT_TYPE_LATEST)

    # Added last, so outermost: request metrics see every request, the fast path's included.
    latest_route = next(r for r in app.routes if getattr(r, "path", None) == LATEST_PATH)
    app.add_middleware(LatestWeightsFastPath, cache=latest_cache, route=latest_route)
    app.add_middleware(RequestMetricsMiddleware, metrics=request_metrics)
    return app


def _next_eval_in_seconds(
    latest: CycleRecord | None, head: tuple[int, datetime] | None, scheduler: SchedulerSettings
) -> int | None:
    """On the chain clock when the sensor recorded a head (that is how it opens cycles), else
    from the wall clock since the latest cycle opened."""
    if latest is None:
        return 0
    interval_blocks = latest.config.eval_interval_blocks if latest.config else scheduler.interval_blocks
    if head is not None:
        blocks_left = latest.block + interval_blocks - head[0]
        elapsed = (datetime.now(UTC) - head[1]).total_seconds()
        return max(0, int(blocks_left * SECONDS_PER_BLOCK - elapsed))
    elapsed = (datetime.now(UTC) - latest.opened_at).total_seconds()
    interval_s = interval_blocks * SECONDS_PER_BLOCK if latest.config else scheduler.eval_interval_seconds
    return max(0, int(interval_s - elapsed))


def _cycle_env_ids(cycle: CycleRecord | None, configured: list[str]) -> list[str]:
    """The envs `cycle` recorded it runs; this process's configured list before any cycle has one."""
    return list(cycle.config.env_ids) if cycle is not None and cycle.config is not None else configured
