"""GET /v1/environments: enabled environments and how miners did on them."""

from __future__ import annotations

from fastapi import APIRouter

from kinitro_dagster.sim.registry import env_family, env_task_name
from kinitro_dagster.warehouse.records import CycleRecord
from weights_api.dependencies import EnvIdsDep, WarehouseDep
from weights_api.models import EnvironmentInfo, EnvironmentsResponse
from weights_api.routes.common import UNAVAILABLE

router = APIRouter(tags=["Miners & Environments"])


@router.get("/v1/environments", response_model=EnvironmentsResponse, responses=UNAVAILABLE)
def environments(store: WarehouseDep, env_ids: EnvIdsDep) -> EnvironmentsResponse:
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
            for env_id in cycle_env_ids(scored, env_ids)
        ],
    )


def cycle_env_ids(cycle: CycleRecord | None, configured: list[str]) -> list[str]:
    """The envs `cycle` recorded it runs; this process's configured list before any cycle has one."""
    return list(cycle.config.env_ids) if cycle is not None and cycle.config is not None else configured
