"""Response models of the weights API (they are its OpenAPI schema).

Weights responses carry both the operator guide's fields (`block`, `created_at`) and the ones
Kinitro validators read (`cycle_id`, `block_number`, `timestamp`, `weights_u16`, `metadata`), so
either kind of client works unchanged. JSON object keys are strings, so uids appear as "5".
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class ErrorResponse(BaseModel):
    detail: str = Field(description="What went wrong and what to do about it.")


class HealthResponse(BaseModel):
    status: Literal["healthy", "unhealthy"]
    database: str = Field(description='"connected", or the reason the database cannot be used.')


class StatusResponse(BaseModel):
    status: Literal["running"] = Field(description="The API is serving.")
    current_block: int | None = Field(
        description="Chain head last seen by the cycle sensor; the latest cycle's block if none was recorded."
    )
    last_eval_block: int | None = Field(description="Block at which the latest cycle opened.")
    next_eval_in_seconds: int | None = Field(description="Estimated seconds until the next cycle opens (0: due now).")
    miners_registered: int = Field(description="Commitments read in the latest cycle that has any.")
    environments_enabled: list[str]
    is_evaluating: bool = Field(description="The latest cycle is still running.")
    current_cycle_id: str | None = Field(description="Key of the running cycle, if any.")
    last_completed_cycle_id: str | None
    total_cycles: int


class WeightsU16(BaseModel):
    uids: list[int]
    values: list[int] = Field(description="bittensor's max-normalised u16 weights, aligned with `uids`.")


class WeightsMetadata(BaseModel):
    n_miners_evaluated: int
    n_environments: int
    evaluation_duration_seconds: float


class WeightsResponse(BaseModel):
    cycle_id: str = Field(description="Cycle key: the zero-padded block at which the cycle opened.")
    block: int
    block_number: int = Field(description="Same as `block` (Kinitro validators read this name).")
    weights: dict[str, float] = Field(description="uid -> weight; weights sum to 1.")
    weights_u16: WeightsU16
    created_at: datetime
    timestamp: datetime = Field(description="Same as `created_at` (Kinitro validators read this name).")
    metadata: WeightsMetadata
    digest: str | None = Field(
        description="sha256 (hex) of the cycle's inputs: the hash of `digest_parts`. Null for weights "
        "published before they were signed."
    )
    digest_parts: dict[str, str] | None = Field(
        description='sha256 (hex) per input part: "cycle", "configuration", "scoring", "commitments", '
        '"episodes/<env_id>"; recomputable from the cycle\'s audit export (/v1/audit/{cycle_id}).'
    )
    signature: str | None = Field(
        description="sr25519 signature (hex) by `signer` over the cycle id, block, digest and weights "
        "(`kinitro verify` checks it)."
    )
    signer: str | None = Field(description="SS58 address of the backend hotkey that signed.")
    public_key: str | None = Field(description="The signer's public key (hex).")


class ScoresResponse(BaseModel):
    cycle_id: str
    block: int
    status: str = Field(description="Cycle status: running, completed or failed.")
    scores: dict[str, dict[str, float]] = Field(description="uid -> env_id -> success rate.")
    pareto_frontier: list[int] = Field(description="uids on the epsilon-Pareto front.")
    points: dict[str, float] = Field(description="uid -> subset points.")
    weights: dict[str, float] = Field(description="uid -> weight from scoring.")
    thresholds: dict[str, dict[str, float]] = Field(description="uid -> env_id -> threshold to beat.")
    created_at: datetime = Field(description="When the cycle completed (or opened, while it runs).")


class MinerInfo(BaseModel):
    uid: int
    hotkey: str
    status: str = Field(
        description='"active" when its commitment was evaluated; otherwise why not: '
        "unparseable, fetch_failed or duplicate."
    )
    endpoint: str | None = Field(default=None, description="Always null: the backend deploys policies itself.")
    repo: str | None
    revision: str | None
    commit_block: int
    first_seen_block: int | None = Field(description="First block this (repo, revision) was seen: priority.")
    duplicate_of_uid: int | None
    reason: str | None
    cycle_id: str = Field(description="The cycle this commitment was read in.")
    last_evaluated: datetime | None
    last_evaluated_block: int | None
    avg_success_rate: float | None
    environments_evaluated: list[str]
    weight: float | None = Field(description="Weight in the latest published weights, if any.")


class MinersResponse(BaseModel):
    cycle_id: str | None
    miners: list[MinerInfo]


class EnvironmentInfo(BaseModel):
    env_id: str
    env_name: str = Field(description="Family, e.g. metaworld.")
    task_name: str
    enabled: bool
    n_evaluations: int = Field(description="Miners scored on it in the latest scored cycle.")
    avg_success_rate: float | None


class EnvironmentsResponse(BaseModel):
    cycle_id: str | None = Field(description="The scored cycle the statistics come from.")
    environments: list[EnvironmentInfo]
