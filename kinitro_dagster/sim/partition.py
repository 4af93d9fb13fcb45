"""One (cycle, env) partition: deploy every policy, play its episodes, tear everything down.

A policy that fails to deploy fails its own episodes (`deployment_failed`); the others go on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from kinitro_dagster.miners.deployments import DeploymentError, LocalDeployment, start_all
from kinitro_dagster.miners.policy_client import ClientSettings
from kinitro_dagster.sim.base import EnvConfig
from kinitro_dagster.sim.rollout import MinerTarget, evaluate_partition
from kinitro_dagster.warehouse.records import EpisodeRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PolicyUnderTest:
    uid: int
    policy_dir: Path  # the miner's snapshot: a Kinitro miner template directory


def evaluate_env_partition(
    env_id: str,
    policies: list[PolicyUnderTest],
    seeds: list[int],
    env_config: EnvConfig,
    *,
    client_settings: ClientSettings | None = None,
    warmup_timeout_s: float = 120.0,
    episode_timeout_s: float | None = None,
    max_workers: int | None = None,
) -> list[EpisodeRecord]:
    records: list[EpisodeRecord] = []
    deployments: dict[int, LocalDeployment] = {}
    for policy in policies:
        try:
            deployments[policy.uid] = LocalDeployment(policy.policy_dir, warmup_timeout_s=warmup_timeout_s)
        except DeploymentError as exc:  # not a miner template directory
            records += failed_episodes(policy.uid, seeds, "deployment_failed", str(exc))
    try:
        errors = start_all(list(deployments.values()))
        failed = {uid: error for uid, error in zip(deployments, errors, strict=True) if error is not None}
        for uid, error in failed.items():
            records += failed_episodes(uid, seeds, "deployment_failed", str(error))
        targets = [MinerTarget(uid=uid, base_url=d.base_url, pid=d.pid)
                   for uid, d in deployments.items() if uid not in failed]
        if targets:
            records += evaluate_partition(env_id, targets, seeds, env_config, max_workers=max_workers,
                                          client_settings=client_settings, episode_timeout_s=episode_timeout_s)
    finally:
        for deployment in deployments.values():
            deployment.stop()
    return sorted(records, key=lambda r: (r.uid, r.episode))


def failed_episodes(uid: int, seeds: list[int], error_kind: str, reason: str) -> list[EpisodeRecord]:
    """Episodes that never ran, recorded as failures so the miner's row count stays complete."""
    return [EpisodeRecord(uid=uid, episode=i, seed=seed, success=False, total_reward=0.0, steps=0,
                          wall_seconds=0.0, error_kind=error_kind, error=reason[:2000])
            for i, seed in enumerate(seeds)]
