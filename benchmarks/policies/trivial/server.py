"""FastAPI server in the miner template's shape: POST /reset, POST /act, GET /health."""

from __future__ import annotations

import time

from fastapi import FastAPI
from policy import RobotPolicy
from pydantic import BaseModel
from rl_interface import Action, Observation

app = FastAPI(title="trivial benchmark policy")
_policy = RobotPolicy()
_started = time.time()


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


@app.get("/health", response_model=HealthResponse)
async def health() -> HealthResponse:
    return HealthResponse(status="healthy", model_loaded=_policy.is_loaded(), uptime_seconds=time.time() - _started)


@app.post("/reset", response_model=ResetResponse)
async def reset(request: ResetRequest) -> ResetResponse:
    episode_id = await _policy.reset(request.task_config.model_dump())
    return ResetResponse(status="ok", episode_id=episode_id)


@app.post("/act", response_model=ActResponse)
async def act(request: ActRequest) -> ActResponse:
    return ActResponse(action=await _policy.act(request.obs))
