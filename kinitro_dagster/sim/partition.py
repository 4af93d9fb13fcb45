"""One (cycle, env) partition: deploy every policy, play its episodes, tear everything down.

A policy that fails to deploy fails its own episodes (`deployment_failed`); the others go on.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kinitro_dagster.miners.deployments import LocalDeployment
from kinitro_dagster.miners.policy_client import ClientSettings
from kinitro_dagster.sim.base import EnvConfig
from kinitro_dagster.sim.rollout import MinerTarget, evaluate_partition
from kinitro_dagster.warehouse.records import EpisodeRecord

log = logging.getLogger(__name__)

MAX_PARALLEL_WARMUPS = 8


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
    max_workers: int | None = None,
) -> list[EpisodeRecord]:
    deployments: dict[int, LocalDeployment] = {}
    failed: dict[int, str] = {}
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(MAX_PARALLEL_WARMUPS, len(policies)))) as pool:
            started = pool.map(lambda p: _start(p, warmup_timeout_s), policies)
            for policy, (deployment, reason) in zip(policies, started, strict=True):
                if deployment is not None:
                    deployments[policy.uid] = deployment
                else:
                    failed[policy.uid] = reason
        targets = [MinerTarget(uid=uid, base_url=d.base_url, pid=d.pid) for uid, d in deployments.items()]
        records = evaluate_partition(env_id, targets, seeds, env_config, max_workers=max_workers,
                                     client_settings=client_settings) if targets else []
    finally:
        for deployment in deployments.values():
            deployment.stop()
    for uid, reason in failed.items():
        records += failed_episodes(uid, seeds, "deployment_failed", reason)
    return sorted(records, key=lambda r: (r.uid, r.episode))


def _start(policy: PolicyUnderTest, warmup_timeout_s: float) -> tuple[LocalDeployment | None, str]:
    """Start one deployment; any failure is this miner's, never the partition's."""
    deployment = None
    try:
        deployment = LocalDeployment(policy.policy_dir, warmup_timeout_s=warmup_timeout_s)
        deployment.start()
    except Exception as exc:
        if deployment is not None:
            deployment.stop()
        log.warning("deployment failed uid=%s reason=%s", policy.uid, exc)
        return None, f"{type(exc).__name__}: {exc}"
    return deployment, ""


def failed_episodes(uid: int, seeds: list[int], error_kind: str, reason: str) -> list[EpisodeRecord]:
    """Episodes that never ran, recorded as failures so the miner's row count stays complete."""
    return [EpisodeRecord(uid=uid, episode=i, seed=seed, success=False, total_reward=0.0, steps=0,
                          wall_seconds=0.0, error_kind=error_kind, error=reason[:2000])
            for i, seed in enumerate(seeds)]
