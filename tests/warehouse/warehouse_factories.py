"""Small record builders shared by the warehouse and weights API tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kinitro_dagster.warehouse.records import (
    CommitmentRecord,
    CommitmentStatus,
    CycleRecord,
    CycleStatus,
    EpisodeRecord,
    MinerScoreRecord,
    ParetoScoreRecord,
    WeightsRecord,
)

T0 = datetime(2025, 1, 15, 10, 0, tzinfo=UTC)


def cycle_key(block: int) -> str:
    return f"{block:010d}"


def make_cycle(block: int, status: CycleStatus = CycleStatus.RUNNING, **overrides: object) -> CycleRecord:
    values: dict[str, object] = {
        "cycle_key": cycle_key(block),
        "block": block,
        "block_hash": f"0x{block:064x}",
        "opened_at": T0 + timedelta(seconds=block),
        "status": status,
        "n_envs": 2,
    }
    values.update(overrides)
    return CycleRecord(**values)  # type: ignore[arg-type]


def make_commitment(uid: int, **overrides: object) -> CommitmentRecord:
    values: dict[str, object] = {
        "uid": uid,
        "hotkey": f"5Hotkey{uid:04d}",
        "raw": f"miner{uid}/policy:{uid:08x}",
        "commit_block": 90 + uid,
        "status": CommitmentStatus.OK,
        "repo": f"miner{uid}/policy",
        "revision": f"{uid:040x}",
        "first_seen_block": 90 + uid,
        "content_hash": f"sha256:{uid:064x}",
    }
    values.update(overrides)
    return CommitmentRecord(**values)  # type: ignore[arg-type]


def make_episodes(uids: range | list[int], n_episodes: int, *, success_every: int = 2) -> list[EpisodeRecord]:
    return [
        EpisodeRecord(
            uid=uid,
            episode=i,
            seed=1000 + i,
            success=i % success_every == 0,
            total_reward=float(uid + i) / 10,
            steps=500,
            wall_seconds=0.25,
            latency_p50_ms=1.5,
            latency_p99_ms=4.0,
        )
        for uid in uids
        for i in range(n_episodes)
    ]


def make_scores(uids: list[int], env_ids: list[str]) -> tuple[list[MinerScoreRecord], list[ParetoScoreRecord]]:
    miner = [
        MinerScoreRecord(
            uid=u, env_id=e, success_rate=(u + 1) / 10, episodes_completed=10, episodes_failed=0, mean_reward=float(u)
        )
        for u in uids
        for e in env_ids
    ]
    total = sum(u + 1 for u in uids)
    pareto = [
        ParetoScoreRecord(
            uid=u,
            on_frontier=u == max(uids),
            points=float(u + 1),
            weight=(u + 1) / total,
            thresholds={e: min(1.0, (u + 1) / 10 + 0.05) for e in env_ids},
        )
        for u in uids
    ]
    return miner, pareto


def make_weights(block: int, weights: dict[int, float] | None = None, **overrides: object) -> WeightsRecord:
    weights = weights or {0: 0.15, 1: 0.25, 5: 0.60}
    top = max(weights.values())
    values: dict[str, object] = {
        "cycle_key": cycle_key(block),
        "block": block,
        "weights": weights,
        "u16_uids": sorted(weights),
        "u16_values": [round(weights[u] / top * 65535) for u in sorted(weights)],
        "created_at": T0 + timedelta(seconds=block, minutes=30),
        "n_miners": len(weights),
        "n_envs": 2,
        "duration_seconds": 1800.0,
    }
    values.update(overrides)
    return WeightsRecord(**values)  # type: ignore[arg-type]
