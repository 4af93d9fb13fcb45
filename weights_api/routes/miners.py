"""GET /v1/miners: the latest cycle's miners, their commitment, status and latest results."""

from __future__ import annotations

from fastapi import APIRouter

from kinitro_dagster.warehouse.records import CommitmentStatus
from weights_api.dependencies import WarehouseDep
from weights_api.models import MinerInfo, MinersResponse
from weights_api.routes.common import UNAVAILABLE

router = APIRouter(tags=["Miners & Environments"])


@router.get("/v1/miners", response_model=MinersResponse, responses=UNAVAILABLE)
def miners(store: WarehouseDep) -> MinersResponse:
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
