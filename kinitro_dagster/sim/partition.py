"""One (cycle, env) partition: deploy every policy, play its episodes, tear deployments down.

A policy that fails to deploy fails its own episodes (`deployment_failed`); the others go on.
Local mode (the default) starts a subprocess per policy and stops them all at the end. Docker mode
(`docker=DockerOptions(...)`) takes containers from the process's deployment cache: a running
container of the same (repo, revision) is reused within its TTL; failed, crashed and expired ones
are torn down at the end, and all of this partition's if the partition itself fails.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from kinitro_dagster.miners.deployments import Deployment, DeploymentError, LocalDeployment, start_all
from kinitro_dagster.miners.docker_deployment import DeploymentPool, DockerOptions, shared_pool
from kinitro_dagster.miners.policy_client import ClientSettings
from kinitro_dagster.sim.base import EnvConfig
from kinitro_dagster.sim.rollout import MinerTarget, evaluate_partition
from kinitro_dagster.warehouse.records import EpisodeRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PolicyUnderTest:
    uid: int
    policy_dir: Path  # the miner's snapshot: a Kinitro miner template directory
    # Docker mode's cache key and container labels; read from a hub-cache snapshot path when None.
    repo: str | None = None
    revision: str | None = None


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
    miners_per_worker: int | None = None,
    docker: DockerOptions | None = None,
    docker_pool: DeploymentPool | None = None,
) -> list[EpisodeRecord]:
    """Every policy plays `seeds` on `env_id`. `docker`: run policies in containers (None: local subprocesses)."""
    pool = (docker_pool if docker_pool is not None else shared_pool()) if docker is not None else None
    records: list[EpisodeRecord] = []
    deployments: dict[int, Deployment] = {}
    for policy in policies:
        try:
            if pool is not None and docker is not None:
                deployments[policy.uid] = pool.acquire(policy.policy_dir, docker, repo=policy.repo,
                                                       revision=policy.revision)
            else:
                deployments[policy.uid] = LocalDeployment(policy.policy_dir, warmup_timeout_s=warmup_timeout_s)
        except DeploymentError as exc:  # not a miner template directory, a snapshot unusable in a container
            records += failed_episodes(policy.uid, seeds, "deployment_failed", str(exc))
    failed: dict[int, DeploymentError] = {}
    ok = False
    try:
        # A deployment reused from the cache is already up; only new ones are started.
        fresh = {uid: d for uid, d in deployments.items() if not d.is_alive()}
        errors = start_all(list(fresh.values()))
        failed = {uid: error for uid, error in zip(fresh, errors, strict=True) if error is not None}
        for uid, error in failed.items():
            records += failed_episodes(uid, seeds, "deployment_failed", str(error))
        targets = [MinerTarget(uid=uid, base_url=d.base_url, pid=d.pid)
                   for uid, d in deployments.items() if uid not in failed]
        if targets:
            records += evaluate_partition(env_id, targets, seeds, env_config, max_workers=max_workers,
                                          miners_per_worker=miners_per_worker, client_settings=client_settings,
                                          episode_timeout_s=episode_timeout_s)
        ok = True
    finally:
        if pool is None:
            for deployment in deployments.values():
                deployment.stop()
        else:
            pool.release([d for uid, d in deployments.items() if uid in failed], failed=True)
            pool.release([d for uid, d in deployments.items() if uid not in failed], failed=not ok)
    return sorted(records, key=lambda r: (r.uid, r.episode))


def failed_episodes(uid: int, seeds: list[int], error_kind: str, reason: str) -> list[EpisodeRecord]:
    """Episodes that never ran, recorded as failures so the miner's row count stays complete."""
    return [EpisodeRecord(uid=uid, episode=i, seed=seed, success=False, total_reward=0.0, steps=0,
                          wall_seconds=0.0, error_kind=error_kind, error=reason[:2000])
            for i, seed in enumerate(seeds)]
