"""HTTP server for the policy in `policy.py` (Kinitro's miner template protocol).

    POST /reset  {"task_config": {...}}  -> {"status", "episode_id"}
    POST /act    {"obs": Observation}    -> {"action": Action}
    GET  /health                         -> {"status", "model_loaded", "uptime_seconds"}

Run from inside this directory: python -m uvicorn server:app --host 127.0.0.1 --port 8000
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException
from policy import RobotPolicy
from pydantic import BaseModel
from rl_interface import Action, Observation

logger = logging.getLogger("policy_server")
_started = time.monotonic()
_policy = RobotPolicy()


class TaskConfig(BaseModel):
    env_id: str | None = None
    env_name: str | None = None
    task_name: str | None = None
    seed: int | None = None
    task_id: int | None = None


class ResetRequest(BaseModel):
    task_config: TaskConfig


class ResetResponse(BaseModel):
    status: str = "ok"
    episode_id: str | None = None


class ActRequest(BaseModel):
    obs: Observation


class ActResponse(BaseModel):
    action: Action


class HealthResponse(BaseModel):
    status: str
    model_loaded: bool
    uptime_seconds: float


@asynccontextmanager
async def lifespan(app: FastAPI):
    yield
    await _policy.cleanup()


app = FastAPI(title="Robot policy server", lifespan=lifespan)


@app.get("/health", response_model=HealthResponse)
async def health() -> HealthResponse:
    return HealthResponse(
        status="healthy", model_loaded=_policy.is_loaded(), uptime_seconds=time.monotonic() - _started
    )


@app.post("/reset", response_model=ResetResponse)
async def reset(request: ResetRequest) -> ResetResponse:
    try:
        episode_id = await _policy.reset(request.task_config.model_dump())
    except Exception as exc:
        logger.exception("reset failed")
        raise HTTPException(status_code=500, detail=f"{type(exc).__name__}: {exc}") from exc
    return ResetResponse(status="ok", episode_id=episode_id)


@app.post("/act", response_model=ActResponse)
async def act(request: ActRequest) -> ActResponse:
    try:
        action = await _policy.act(request.obs)
    except Exception as exc:
        logger.exception("act failed")
        raise HTTPException(status_code=500, detail=f"{type(exc).__name__}: {exc}") from exc
    return ActResponse(action=action)
