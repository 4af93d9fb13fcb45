"""Plain records that cross the warehouse boundary: what assets write and the API reads.

One dataclass per table row. They carry no SQLAlchemy or Dagster types so the pure core and
the tests can build them directly.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime


class CommitmentStatus(enum.StrEnum):
    OK = "ok"
    UNPARSEABLE = "unparseable"
    FETCH_FAILED = "fetch_failed"
    DUPLICATE = "duplicate"  # `duplicate_of_uid` names the earlier committer


class CycleStatus(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True)
class CycleConfiguration:
    """What a cycle runs with, recorded when it opens. Every later step of the cycle (its episode
    runs, scoring, the weights API) reads this record, never the environment of the process it
    happens to run in, so a run container or API process with other settings cannot change it."""

    env_ids: tuple[str, ...]
    episodes_per_env: int
    eval_interval_blocks: int
    max_timesteps: int
    action_timeout: float
    eval_timeout: float
    use_images: bool
    privileged_state: bool
    pareto_temperature: float
    cycle_timeout_seconds: int
    code_version: str
    # Cycles recorded before this field existed ran without physics randomization.
    physics_randomization: bool = False
    # Cycles recorded before this field existed drew the full meshes.
    render_mesh_detail: float = 1.0

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "env_ids": list(self.env_ids)}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> CycleConfiguration:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        return cls(**{**values, "env_ids": tuple(values["env_ids"])})  # type: ignore[arg-type]


@dataclass(frozen=True)
class CycleRecord:
    cycle_key: str  # zero-padded opening block, e.g. "0000012300"
    block: int
    block_hash: str
    opened_at: datetime
    status: CycleStatus = CycleStatus.RUNNING
    completed_at: datetime | None = None
    n_miners: int = 0
    n_envs: int = 0
    config: CycleConfiguration | None = None  # None: opened before configurations were recorded


@dataclass(frozen=True)
class ScoresVersion:
    """Everything a cycle's published scores depend on besides their rows: it changes whenever
    the scores are written again or the cycle's status does."""

    cycle_key: str
    revision: int  # writes of the cycle's scores so far; 0 while it has none
    status: CycleStatus
    completed_at: datetime | None


@dataclass(frozen=True)
class CommitmentRecord:
    uid: int
    hotkey: str
    raw: str  # the commitment text as read from chain
    commit_block: int
    status: CommitmentStatus
    repo: str | None = None
    revision: str | None = None
    first_seen_block: int | None = None  # first block this (repo, revision) was seen: scoring priority
    content_hash: str | None = None
    duplicate_of_uid: int | None = None
    reason: str | None = None  # why the commitment is not OK, for the operator


@dataclass(frozen=True)
class EpisodeRecord:
    uid: int
    episode: int  # index within (cycle, env)
    seed: int
    success: bool
    total_reward: float
    steps: int
    wall_seconds: float
    error_kind: str | None = None  # timeout, http_error, bad_action, crashed, ...
    error: str | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None


# What an episode row keeps of its error text (a deployment failure carries the server's log tail).
ERROR_TEXT_CHARS = 2000


def failed_episodes(uid: int, seeds: Sequence[int], error_kind: str, reason: str, *,
                    start: int = 0) -> list[EpisodeRecord]:  # fmt: skip
    """Episodes `start`.. of `seeds` that never ran (no deployment, a dead server, a broken
    worker), recorded as zero-step failures so the miner's row count stays complete."""
    return [EpisodeRecord(uid=uid, episode=i, seed=seeds[i], success=False, total_reward=0.0, steps=0,
                          wall_seconds=0.0, error_kind=str(error_kind), error=reason[:ERROR_TEXT_CHARS])
            for i in range(start, len(seeds))]  # fmt: skip


@dataclass(frozen=True)
class MinerScoreRecord:
    uid: int
    env_id: str
    success_rate: float
    episodes_completed: int
    episodes_failed: int  # ended by an error (not merely an unsuccessful episode)
    mean_reward: float


@dataclass(frozen=True)
class ParetoScoreRecord:
    uid: int
    on_frontier: bool
    points: float
    weight: float
    thresholds: dict[str, float] = field(default_factory=dict)  # env_id -> threshold


@dataclass(frozen=True)
class Attestation:
    """What proves a weights row: the digest of everything it was computed from, and the backend
    hotkey's signature over the digest and the weights (`kinitro_dagster.audit`)."""

    digest: str  # sha256 hex over `parts`
    parts: dict[str, str]  # "cycle", "configuration", "scoring", "commitments", "episodes/<env>" -> sha256 hex
    scoring: dict[str, object]  # the scoring parameters and the code version that scored
    signer: str  # SS58 address of the signing hotkey
    public_key: str  # hex
    signature: str  # hex, sr25519 over `audit.signed_message(...)`
    version: int = 1

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Attestation:
        return cls(**data)  # type: ignore[arg-type]


@dataclass(frozen=True)
class WeightsRecord:
    cycle_key: str
    block: int
    weights: dict[int, float]  # uid -> weight, summing to 1
    u16_uids: list[int]
    u16_values: list[int]
    created_at: datetime
    n_miners: int
    n_envs: int
    duration_seconds: float
    attestation: Attestation | None = None  # None: published before weights were signed (revision 0004)
