"""GET /v1/status: where the backend is."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from kinitro_dagster.settings import SchedulerSettings
from kinitro_dagster.warehouse.records import CycleRecord, CycleStatus
from weights_api.dependencies import EnvIdsDep, SchedulerDep, WarehouseDep
from weights_api.models import StatusResponse
from weights_api.routes.common import UNAVAILABLE
from weights_api.routes.environments import cycle_env_ids

SECONDS_PER_BLOCK = 12  # Bittensor's block time

router = APIRouter(tags=["Health"])


@router.get("/v1/status", response_model=StatusResponse, responses=UNAVAILABLE)
def status(store: WarehouseDep, scheduler: SchedulerDep, env_ids: EnvIdsDep) -> StatusResponse:
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
        next_eval_in_seconds=next_eval_in_seconds(latest, head, scheduler),
        miners_registered=store.count_commitments(with_commitments.cycle_key) if with_commitments else 0,
        environments_enabled=cycle_env_ids(latest, env_ids),
        is_evaluating=bool(latest and latest.status == CycleStatus.RUNNING),
        current_cycle_id=latest.cycle_key if latest and latest.status == CycleStatus.RUNNING else None,
        last_completed_cycle_id=completed.cycle_key if completed else None,
        total_cycles=sum(counts.values()),
    )


def next_eval_in_seconds(
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
