"""One (cycle, env) partition: deploy every policy, play its episodes, tear everything down.

A policy that fails to deploy fails its own episodes (`deployment_failed`); the others go on.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from kinitro_dagster.miners.deployments import LocalDeployment
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
    act_timeout_s: float = 0.5,
    warmup_timeout_s: float = 120.0,
    max_workers: int | None = None,
) -> list[EpisodeRecord]:
    with ExitStack() as stack:
        deployments = {
            p.uid: stack.enter_context(
                _closing(LocalDeployment(p.policy_dir, warmup_timeout_s=warmup_timeout_s))
            )
            for p in policies
        }
        failed = _start_all(deployments)
        targets = [
            MinerTarget(uid=uid, base_url=d.base_url) for uid, d in deployments.items() if uid not in failed
        ]
        records = (
            evaluate_partition(
                env_id, targets, seeds, env_config, max_workers=max_workers, act_timeout_s=act_timeout_s
            )
            if targets
            else []
        )
    for uid, reason in failed.items():
        records += failed_episodes(uid, seeds, "deployment_failed", reason)
    return sorted(records, key=lambda r: (r.uid, r.episode))


def _start_all(deployments: dict[int, LocalDeployment]) -> dict[int, str]:
    """Start deployments concurrently (warm-up dominates); return {uid: reason} for those that failed."""

    def start(item: tuple[int, LocalDeployment]) -> tuple[int, str | None]:
        uid, deployment = item
        try:
            deployment.start()
        except Exception as exc:  # any start failure is this miner's, never the partition's
            log.warning("deployment failed uid=%s reason=%s", uid, exc)
            return uid, f"{type(exc).__name__}: {exc}"
        return uid, None

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(deployments)))) as pool:
        return {uid: reason for uid, reason in pool.map(start, deployments.items()) if reason is not None}


def failed_episodes(uid: int, seeds: list[int], error_kind: str, reason: str) -> list[EpisodeRecord]:
    """Episodes that never ran, recorded as failures so the miner's row count stays complete."""
    return [
        EpisodeRecord(
            uid=uid,
            episode=i,
            seed=seed,
            success=False,
            total_reward=0.0,
            steps=0,
            wall_seconds=0.0,
            error_kind=error_kind,
            error=reason[:2000],
        )
        for i, seed in enumerate(seeds)
    ]


class _closing:
    """Stop a deployment on exit whether or not it started."""

    def __init__(self, deployment: LocalDeployment) -> None:
        self.deployment = deployment

    def __enter__(self) -> LocalDeployment:
        return self.deployment

    def __exit__(self, *exc: object) -> None:
        started = time.monotonic()
        self.deployment.stop()
        log.debug("deployment stopped in %.2fs", time.monotonic() - started)
