"""GET /health: liveness and database reachability (checked at most once a second)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from weights_api.dependencies import DatabaseCheckDep
from weights_api.models import HealthResponse

router = APIRouter(tags=["Health"])
HEALTHY = HealthResponse(status="healthy", database="connected").model_dump_json().encode()


@router.get("/health", response_model=None, responses={200: {"model": HealthResponse}, 503: {"model": HealthResponse}})
async def health(check: DatabaseCheckDep) -> Response:
    """Liveness and database reachability. The database's answer is at most a second old."""
    error = await check.error()
    if error is not None:
        return JSONResponse(status_code=503, content=HealthResponse(status="unhealthy", database=error).model_dump())
    return Response(content=HEALTHY, media_type="application/json")
