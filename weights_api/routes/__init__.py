"""The weights API's routes, a router per resource, in the order the OpenAPI schema lists them."""

from __future__ import annotations

from weights_api.routes import audit, environments, health, metrics, miners, scores, status, weights

ROUTERS = (
    health.router,
    status.router,
    weights.router,
    scores.router,
    miners.router,
    environments.router,
    audit.router,
    metrics.router,
)
