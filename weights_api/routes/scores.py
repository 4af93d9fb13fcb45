"""GET /v1/scores/latest and /v1/scores/{cycle_id}: success rates, points and the front of a cycle."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from kinitro_dagster.warehouse import Warehouse
from kinitro_dagster.warehouse.records import CycleRecord, CycleStatus
from weights_api.dependencies import WarehouseDep
from weights_api.models import ScoresResponse
from weights_api.routes.common import NOT_FOUND, UNAVAILABLE, CycleIdParam, cycle_by_id

router = APIRouter(prefix="/v1/scores", tags=["Scores"])


@router.get("/latest", response_model=ScoresResponse, responses=NOT_FOUND | UNAVAILABLE)
def latest_scores(store: WarehouseDep) -> ScoresResponse:
    """Success rates per miner and environment, points and front of the newest scored cycle."""
    cycle = store.latest_scored_cycle()
    if cycle is None:
        raise HTTPException(404, "no cycle has been scored yet")
    return scores_for(store, cycle)


@router.get("/{cycle_id}", response_model=ScoresResponse, responses=NOT_FOUND | UNAVAILABLE)
def cycle_scores(cycle_id: CycleIdParam, store: WarehouseDep) -> ScoresResponse:
    """Scores of one cycle, by its key (0000012300) or its block (12300)."""
    return scores_for(store, cycle_by_id(store, cycle_id))


def scores_for(store: Warehouse, cycle: CycleRecord) -> ScoresResponse:
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
