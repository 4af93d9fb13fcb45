"""From a cycle's episode records to the arrays `score_cycle` takes (DESIGN §8 inputs).

An episode that did not run counts as a failure: the success rate divides by the cycle's
`episodes_per_env`, not by the episodes that happened to complete. A miner is live when at least
one of its episodes ran to the end without an error (timeouts, crashes and failed deployments
do not count).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from kinitro_dagster.scoring.cycle import CycleScores, score_cycle
from kinitro_dagster.scoring.thresholds import MAX_GAP, MIN_GAP, THRESHOLD_Z
from kinitro_dagster.warehouse.records import CommitmentRecord, CycleConfiguration, EpisodeRecord, MinerScoreRecord


@dataclass(frozen=True)
class ScoreInputs:
    uids: np.ndarray  # (M,) int
    priority: np.ndarray  # (M,) first-seen block of the miner's (repo, revision)
    success: np.ndarray  # (M, E) success rate
    live: np.ndarray  # (M,) bool
    env_ids: list[str]
    miner_scores: list[MinerScoreRecord]


def build_score_inputs(
    miners: Sequence[CommitmentRecord],
    episodes_by_env: Mapping[str, Sequence[EpisodeRecord]],
    env_ids: Sequence[str],
    n_episodes: int,
) -> ScoreInputs:
    uids = [m.uid for m in miners]
    row = {uid: i for i, uid in enumerate(uids)}
    success = np.zeros((len(uids), len(env_ids)))
    live = np.zeros(len(uids), dtype=bool)
    miner_scores = []
    for e, env_id in enumerate(env_ids):
        per_uid: dict[int, list[EpisodeRecord]] = {uid: [] for uid in uids}
        for record in episodes_by_env.get(env_id, []):
            if record.uid in per_uid:
                per_uid[record.uid].append(record)
        for uid, episodes in per_uid.items():
            wins = sum(r.success for r in episodes)
            success[row[uid], e] = min(wins, n_episodes) / n_episodes
            completed = [r for r in episodes if r.error_kind is None]
            live[row[uid]] |= bool(completed)
            miner_scores.append(MinerScoreRecord(
                uid=uid, env_id=env_id, success_rate=float(success[row[uid], e]),
                episodes_completed=len(completed), episodes_failed=len(episodes) - len(completed),
                mean_reward=float(np.mean([r.total_reward for r in episodes])) if episodes else 0.0,
            ))
    priority = np.array([m.first_seen_block if m.first_seen_block is not None else m.commit_block for m in miners])
    return ScoreInputs(uids=np.array(uids, dtype=np.int64), priority=priority.astype(np.int64), success=success,
                       live=live, env_ids=list(env_ids), miner_scores=miner_scores)


@dataclass(frozen=True)
class ScoringParameters:
    """Everything besides the episodes that decides a cycle's weights."""

    temperature: float
    z: float = THRESHOLD_Z
    min_gap: float = MIN_GAP
    max_gap: float = MAX_GAP

    @classmethod
    def for_cycle(cls, config: CycleConfiguration) -> ScoringParameters:
        """The parameters a cycle with this recorded configuration is scored with."""
        return cls(temperature=config.pareto_temperature)

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def score_records(
    miners: Sequence[CommitmentRecord],
    episodes_by_env: Mapping[str, Sequence[EpisodeRecord]],
    env_ids: Sequence[str],
    n_episodes: int,
    parameters: ScoringParameters,
) -> tuple[ScoreInputs, CycleScores]:
    """A cycle's scores from its records: what `pareto_scores` publishes and `kinitro verify` recomputes.
    `miners` are the cycle's OK commitments."""
    inputs = build_score_inputs(miners, episodes_by_env, env_ids, n_episodes)
    scores = score_cycle(inputs.success, inputs.uids, inputs.priority, inputs.live, n_episodes,
                         temperature=parameters.temperature, z=parameters.z,
                         min_gap=parameters.min_gap, max_gap=parameters.max_gap)
    return inputs, scores
