"""GET /v1/scores/latest and /v1/scores/{cycle_id}: success rates, points and the front of a cycle.

Bodies come from `ScoresCache` (built once per version of a cycle's scores); both routes answer a
matching If-None-Match with a bodiless 304.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from kinitro_dagster.warehouse.records import CycleStatus
from weights_api.dependencies import ScoresCacheDep, WarehouseDep
from weights_api.models import ScoresResponse
from weights_api.routes.common import NOT_FOUND, UNAVAILABLE, CycleIdParam, conditional_response, cycle_by_id

router = APIRouter(prefix="/v1/scores", tags=["Scores"])
RESPONSES = {200: {"model": ScoresResponse}, 304: {"description": "Unchanged since the ETag given."}}


@router.get("/latest", response_model=None, responses=RESPONSES | NOT_FOUND | UNAVAILABLE)
async def latest_scores(request: Request, scores: ScoresCacheDep) -> Response:
    """Success rates per miner and environment, points and front of the newest scored cycle."""
    entry = await scores.latest()
    if entry is None:
        raise HTTPException(404, "no cycle has been scored yet")
    return conditional_response(request, entry)


@router.get("/{cycle_id}", response_model=None, responses=RESPONSES | NOT_FOUND | UNAVAILABLE)
def cycle_scores(cycle_id: CycleIdParam, request: Request, store: WarehouseDep, scores: ScoresCacheDep) -> Response:
    """Scores of one cycle, by its key (0000012300) or its block (12300)."""
    cycle = cycle_by_id(store, cycle_id)
    entry = scores.body(cycle.cycle_key)
    if entry is None:
        raise HTTPException(
            404, f"cycle {cycle.cycle_key} has no scores yet (status {CycleStatus(cycle.status).value})"
        )
    return conditional_response(request, entry)
