"""Time the audit path of a full-subnet cycle (256 miners x 8 envs x 50 episodes = 102,400 episode
rows): attesting it (digest + signature), writing its Parquet export, reading it back, and
`verify_weights` (every digest part and the weights recomputed). Prints one JSON line.

    python benchmarks/bench_audit.py
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from kinitro_dagster.audit.attestation import attest, scoring_record
from kinitro_dagster.audit.export import CycleAudit, load_audit, write_audit
from kinitro_dagster.audit.signing import demo_hotkey
from kinitro_dagster.audit.verify import verify_weights, weights_response_fields
from kinitro_dagster.scoring.inputs import ScoringParameters, score_records
from kinitro_dagster.scoring.weights import weights_to_u16
from kinitro_dagster.warehouse.records import (
    CommitmentRecord,
    CommitmentStatus,
    CycleConfiguration,
    CycleRecord,
    EpisodeRecord,
    WeightsRecord,
)

MINERS, EPISODES = 256, 50
ENVS = [f"metaworld/{name}-v3" for name in ("reach", "push", "pick-place", "door-open", "drawer-open",
                                             "drawer-close", "button-press-topdown", "peg-insert-side")]


def synthetic_cycle(rng: np.random.Generator) -> tuple[CycleRecord, list[CommitmentRecord], dict]:
    config = CycleConfiguration(env_ids=tuple(ENVS), episodes_per_env=EPISODES, eval_interval_blocks=300,
                                max_timesteps=500, action_timeout=0.5, eval_timeout=300.0, use_images=True,
                                privileged_state=False, pareto_temperature=1.0, cycle_timeout_seconds=7200,
                                code_version="bench", physics_randomization=True)
    cycle = CycleRecord(cycle_key="0000012300", block=12300, block_hash="0x" + "ab" * 32,
                        opened_at=datetime.now(UTC), config=config)
    commitments = [CommitmentRecord(uid=u, hotkey=f"5Hot{u:04d}", raw=f"m{u}/p:{u:08x}", commit_block=u,
                                    status=CommitmentStatus.OK, repo=f"m{u}/p", revision=f"{u:040x}",
                                    first_seen_block=u, content_hash=f"{u:064x}") for u in range(MINERS)]
    skill = rng.random((MINERS, len(ENVS)))
    episodes = {env: [EpisodeRecord(uid=u, episode=i, seed=int(rng.integers(2**32)),
                                    success=bool(rng.random() < skill[u, e]), total_reward=float(rng.random() * 500),
                                    steps=int(rng.integers(20, 500)), wall_seconds=float(rng.random() * 20),
                                    latency_p50_ms=2.0, latency_p99_ms=9.0)
                      for u in range(MINERS) for i in range(EPISODES)]
                for e, env in enumerate(ENVS)}
    return cycle, commitments, episodes


def main() -> None:
    rng = np.random.default_rng(16)
    cycle, commitments, episodes = synthetic_cycle(rng)
    parameters = ScoringParameters.for_cycle(cycle.config)
    with tempfile.TemporaryDirectory() as tmp:
        key = demo_hotkey(Path(tmp) / "wallets")
        inputs, scores = score_records(commitments, episodes, ENVS, EPISODES, parameters)
        weights = {int(u): float(w) for u, w in zip(inputs.uids, scores.weights, strict=True)}
        u16_uids, u16_values = weights_to_u16(list(weights), list(weights.values()))
        started = time.perf_counter()
        attestation = attest(cycle, commitments, episodes, scoring_record(parameters), weights,
                             dict(zip(u16_uids, u16_values, strict=True)), key)
        attest_s = time.perf_counter() - started
        record = WeightsRecord(cycle_key=cycle.cycle_key, block=cycle.block, weights=weights, u16_uids=u16_uids,
                               u16_values=u16_values, created_at=datetime.now(UTC), n_miners=MINERS,
                               n_envs=len(ENVS), duration_seconds=3600.0, attestation=attestation)
        audit = CycleAudit(cycle=cycle, commitments=commitments, episodes_by_env=episodes,
                           miner_scores=inputs.miner_scores, pareto=[], weights=record)
        started = time.perf_counter()
        paths = write_audit(audit, Path(tmp) / "export")
        write_s = time.perf_counter() - started
        size = sum(p.stat().st_size for p in paths.values())
        started = time.perf_counter()
        loaded = load_audit(Path(tmp) / "export")
        read_s = time.perf_counter() - started
        started = time.perf_counter()
        report = verify_weights(weights_response_fields(record), loaded, key.ss58_address)
        verify_s = time.perf_counter() - started
    print(json.dumps({
        "benchmark": "audit", "episode_rows": MINERS * len(ENVS) * EPISODES, "verified": report.passed,
        "attest_s": round(attest_s, 3), "write_parquet_s": round(write_s, 3), "read_parquet_s": round(read_s, 3),
        "verify_s": round(verify_s, 3), "export_bytes": size,
    }))


if __name__ == "__main__":
    main()
