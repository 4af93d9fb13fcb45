"""GET /health: liveness and database reachability."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from kinitro_dagster.warehouse import WarehouseUnavailable
from weights_api.dependencies import WarehouseDep
from weights_api.models import HealthResponse

router = APIRouter(tags=["Health"])


@router.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
def health(store: WarehouseDep) -> Response | HealthResponse:
    """Liveness and database reachability."""
    try:
        store.ping()
    except WarehouseUnavailable as exc:
        body = HealthResponse(status="unhealthy", database=str(exc))
        return JSONResponse(status_code=503, content=body.model_dump())
    return HealthResponse(status="healthy", database="connected")
