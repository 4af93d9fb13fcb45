"""GET /metrics: the Prometheus exposition."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from weights_api.dependencies import MetricsRegistryDep
from weights_api.metrics import exposition

router = APIRouter(tags=["Health"])


@router.get("/metrics", response_class=Response)
def metrics(registry: MetricsRegistryDep) -> Response:
    """Prometheus exposition: evaluation metrics from the warehouse, request counts and latency."""
    return Response(content=exposition(registry), media_type=CONTENT_TYPE_LATEST)
