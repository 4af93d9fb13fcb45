"""A small signed cycle built from records, as the weights asset would sign it (no Dagster, no DB)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from warehouse_factories import T0, make_commitment, make_cycle

from kinitro_dagster.audit.attestation import attest, scoring_record
from kinitro_dagster.audit.export import CycleAudit
from kinitro_dagster.audit.signing import SigningKey
from kinitro_dagster.scoring.inputs import ScoringParameters, score_records
from kinitro_dagster.scoring.weights import weights_to_u16
from kinitro_dagster.warehouse.records import (
    CommitmentStatus,
    CycleConfiguration,
    CycleStatus,
    EpisodeRecord,
    ParetoScoreRecord,
    WeightsRecord,
)

ENVS = ["metaworld/reach-v3", "metaworld/push-v3"]
EPISODES = 4


def configuration(**overrides: object) -> CycleConfiguration:
    values: dict[str, object] = dict(
        env_ids=tuple(ENVS), episodes_per_env=EPISODES, eval_interval_blocks=100, max_timesteps=150,
        action_timeout=0.5, eval_timeout=300.0, use_images=False, privileged_state=True, pareto_temperature=1.0,
        cycle_timeout_seconds=7200, code_version="0.1.0+test", physics_randomization=True)
    values.update(overrides)
    return CycleConfiguration(**values)  # type: ignore[arg-type]


def episodes_for(env_index: int) -> list[EpisodeRecord]:
    """uid 0 wins reach, uids 0 and 1 tie on push (3 of 4), uid 2 errs on its last episode; odd rewards."""
    wins = {0: 4 - env_index, 1: 1 + 2 * env_index, 2: 0}
    rows = []
    for uid, won in wins.items():
        for i in range(EPISODES):
            error = "timeout" if uid == 2 and i == EPISODES - 1 else None
            rows.append(EpisodeRecord(uid=uid, episode=i, seed=7919 * (i + 1) + env_index, success=i < won,
                                      total_reward=(uid + 1) * 0.1 + i / 3, steps=150 if i >= won else 40 + i,
                                      wall_seconds=0.3 + i / 7, error_kind=error, error="slow" if error else None,
                                      latency_p50_ms=1.25, latency_p99_ms=3.5))
    return rows


def signed_cycle(key: SigningKey, block: int = 1300) -> CycleAudit:
    cycle = replace(make_cycle(block, CycleStatus.COMPLETED, config=configuration()),
                    completed_at=T0 + timedelta(hours=1))
    commitments = [make_commitment(0), make_commitment(1), make_commitment(2),
                   make_commitment(3, status=CommitmentStatus.UNPARSEABLE, repo=None, revision=None,
                                   raw="not a commitment", reason="no ':' between repo and revision")]
    episodes = {env: episodes_for(i) for i, env in enumerate(ENVS)}
    parameters = ScoringParameters.for_cycle(cycle.config)
    ok = [c for c in commitments if c.status is CommitmentStatus.OK]
    inputs, scores = score_records(ok, episodes, ENVS, EPISODES, parameters)
    weights = {int(uid): float(w) for uid, w in zip(inputs.uids, scores.weights, strict=True)}
    u16_uids, u16_values = weights_to_u16(list(weights), list(weights.values()))
    attestation = attest(cycle, commitments, episodes, scoring_record(parameters), weights,
                         dict(zip(u16_uids, u16_values, strict=True)), key)
    pareto = [ParetoScoreRecord(uid=int(uid), on_frontier=bool(scores.frontier[i]), points=float(scores.points[i]),
                                weight=float(scores.weights[i]),
                                thresholds={env: float(scores.thresholds[i, e]) for e, env in enumerate(ENVS)})
              for i, uid in enumerate(inputs.uids)]
    record = WeightsRecord(cycle_key=cycle.cycle_key, block=block, weights=weights, u16_uids=u16_uids,
                           u16_values=u16_values, created_at=T0 + timedelta(hours=1), n_miners=3, n_envs=2,
                           duration_seconds=3600.0, attestation=attestation)
    return CycleAudit(cycle=cycle, commitments=commitments, episodes_by_env=episodes,
                      miner_scores=inputs.miner_scores, pareto=pareto, weights=record)
