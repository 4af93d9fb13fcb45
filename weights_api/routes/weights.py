"""GET /v1/weights/latest and /v1/weights/{block}: the weights validators set.

Both answer a matching If-None-Match with a bodiless 304. The latest weights are normally served
by `LatestWeightsFastPath` before routing; the route here answers when its cache must revalidate.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import Response

from weights_api.cache import LATEST_CACHE_CONTROL, LATEST_PATH, serialize_weights
from weights_api.dependencies import LatestWeightsDep, WarehouseDep
from weights_api.models import WeightsResponse
from weights_api.routes.common import EXAMPLE_BLOCK, MAX_BLOCK, NOT_FOUND, UNAVAILABLE, conditional_response

PREFIX = "/v1/weights"
BlockParam = Annotated[
    int, Path(ge=0, le=MAX_BLOCK, description="Chain block at which a cycle opened.", examples=[EXAMPLE_BLOCK])
]

router = APIRouter(prefix=PREFIX, tags=["Weights"])


@router.get(
    LATEST_PATH.removeprefix(PREFIX),
    response_model=None,
    responses={
        200: {"model": WeightsResponse, "description": "The newest cycle's weights."},
        304: {"description": "Unchanged since the ETag given in If-None-Match."},
        **NOT_FOUND,
        **UNAVAILABLE,
    },
)
async def latest_weights(request: Request, latest_cache: LatestWeightsDep) -> Response:
    """The weights validators should set now (the cycle with the highest block).

    Send the previous response's ETag in `If-None-Match` to get a bodiless 304 until the
    weights change.
    """
    entry = await latest_cache.get()
    if entry is None:
        raise HTTPException(404, "no weights published yet: the first evaluation cycle has not completed")
    return conditional_response(request, entry, cache_control=LATEST_CACHE_CONTROL)


@router.get(
    "/{block}",
    response_model=None,
    responses={200: {"model": WeightsResponse}, 304: {"description": "Unchanged."}, **NOT_FOUND, **UNAVAILABLE},
)
def weights_at_block(block: BlockParam, request: Request, store: WarehouseDep) -> Response:
    """The weights published by the cycle that opened at exactly `block`."""
    record = store.weights_at_block(block)
    if record is None:
        raise HTTPException(404, f"no weights found for block {block}; see /v1/weights/latest")
    return conditional_response(request, serialize_weights(record))
