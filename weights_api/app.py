"""The weights API: a thin, read-only FastAPI app over the warehouse (DESIGN §9).

Validators poll `/v1/weights/latest`; operators and dashboards read the rest. Nothing here
writes the warehouse. Endpoints that query the database are plain `def` (FastAPI runs them in
its thread pool); the latest-weights path is `async` and normally never leaves the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

from kinitro_dagster.settings import ApiSettings, SchedulerSettings
from kinitro_dagster.sim.registry import ENV_IDS, validate_env_ids
from kinitro_dagster.warehouse import Warehouse, WarehouseUnavailable
from kinitro_dagster.warehouse.errors import first_error_line
from weights_api.cache import LATEST_PATH, LATEST_TTL_S, LatestWeightsCache, LatestWeightsFastPath
from weights_api.database_check import HEALTH_TTL_S, DatabaseCheck
from weights_api.metrics import RequestMetrics, RequestMetricsMiddleware, WarehouseCollector
from weights_api.routes import ROUTERS, weights
from weights_api.routes.common import EXAMPLE_BLOCK
from weights_api.scores_cache import ScoresCache

__all__ = ["EXAMPLE_BLOCK", "LATEST_TTL_S", "create_app"]

log = logging.getLogger(__name__)


def create_app(
    settings: ApiSettings | None = None,
    *,
    scheduler: SchedulerSettings | None = None,
    warehouse: Warehouse | None = None,
    latest_ttl_s: float = LATEST_TTL_S,
    health_ttl_s: float = HEALTH_TTL_S,
) -> FastAPI:
    """Build the app. `scheduler` supplies the eval interval and enabled envs until a cycle has
    recorded its own (after that /v1/status and /v1/environments read the cycle's record);
    `warehouse` lets a caller share an existing store (tests, embedding); `latest_ttl_s`
    is how long a served body of the latest weights or scores is trusted before the warehouse is
    asked again, `health_ttl_s` how long /health reports one database check.

    What the routes (`weights_api.routes`) use is kept on `app.state`, and reaches them by
    dependency (`weights_api.dependencies`)."""
    settings = settings or ApiSettings()
    scheduler = scheduler or SchedulerSettings()
    store = warehouse or Warehouse(settings.database_url)
    env_ids = validate_env_ids(scheduler.env_ids or ENV_IDS)  # published as canonical ids
    latest_cache = LatestWeightsCache(store, ttl_s=latest_ttl_s)
    scores_cache = ScoresCache(store, ttl_s=latest_ttl_s)

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
    app.state.latest_weights = latest_cache
    app.state.scores = scores_cache
    app.state.database_check = DatabaseCheck(store, ttl_s=health_ttl_s)
    app.state.scheduler = scheduler
    app.state.env_ids = env_ids
    app.state.metrics_registry = registry

    app.add_exception_handler(WarehouseUnavailable, warehouse_unavailable)
    app.add_exception_handler(sa.exc.SQLAlchemyError, database_error)
    for router in ROUTERS:
        app.include_router(router)

    # Added last, so outermost: request metrics see every request, the fast path's included.
    latest_route = next(r for r in weights.router.routes if getattr(r, "path", None) == LATEST_PATH)
    app.add_middleware(LatestWeightsFastPath, cache=latest_cache, route=latest_route)
    app.add_middleware(RequestMetricsMiddleware, metrics=request_metrics)
    return app


async def warehouse_unavailable(_request: Request, exc: WarehouseUnavailable) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": str(exc)})


async def database_error(_request: Request, exc: sa.exc.SQLAlchemyError) -> JSONResponse:
    log.error("database error", extra={"error": str(exc)})
    return JSONResponse(status_code=503, content={"detail": f"database error: {first_error_line(exc)}"})
