"""What route handlers get by dependency: the objects `create_app` keeps on `app.state`.

Async, so they resolve on the event loop: the latest-weights route stays off the thread pool.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry

from kinitro_dagster.settings import SchedulerSettings
from kinitro_dagster.warehouse import Warehouse
from weights_api.cache import LatestWeightsCache
from weights_api.database_check import DatabaseCheck
from weights_api.scores_cache import ScoresCache


async def get_warehouse(request: Request) -> Warehouse:
    return request.app.state.warehouse


async def get_latest_weights(request: Request) -> LatestWeightsCache:
    return request.app.state.latest_weights


async def get_database_check(request: Request) -> DatabaseCheck:
    return request.app.state.database_check


async def get_scores_cache(request: Request) -> ScoresCache:
    return request.app.state.scores


async def get_scheduler(request: Request) -> SchedulerSettings:
    """Eval interval and enabled envs until a cycle has recorded its own."""
    return request.app.state.scheduler


async def get_env_ids(request: Request) -> list[str]:
    """The configured env ids (canonical), published until a cycle has recorded its own."""
    return request.app.state.env_ids


async def get_metrics_registry(request: Request) -> CollectorRegistry:
    return request.app.state.metrics_registry


WarehouseDep = Annotated[Warehouse, Depends(get_warehouse)]
LatestWeightsDep = Annotated[LatestWeightsCache, Depends(get_latest_weights)]
DatabaseCheckDep = Annotated[DatabaseCheck, Depends(get_database_check)]
ScoresCacheDep = Annotated[ScoresCache, Depends(get_scores_cache)]
SchedulerDep = Annotated[SchedulerSettings, Depends(get_scheduler)]
EnvIdsDep = Annotated[list[str], Depends(get_env_ids)]
MetricsRegistryDep = Annotated[CollectorRegistry, Depends(get_metrics_registry)]
