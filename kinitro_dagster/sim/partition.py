"""One (cycle, env) partition: deploy every policy, play its episodes, tear deployments down.

A policy that fails to deploy fails its own episodes (`deployment_failed`); the others go on.
Local mode (the default) starts a subprocess per policy and stops them all at the end. Docker mode
(`docker=DockerOptions(...)`) takes containers from a deployment pool: with `scope` (the cycle),
the pool this host's evaluators share for that cycle (`miners.cycle_deployments`), else the
process's own cache. A running container of the same (repo, revision) is reused until idle past
its TTL; failed and crashed ones are torn down at the end, and all of this partition's if the
partition itself fails.

With `runtimes` set, a policy that declares requirements the base runtime lacks runs in its own
runtime (`kinitro_dagster.miners.runtimes`: a venv, or in docker mode an image on the runner image),
built or reused before it is deployed; one that cannot be built fails its miner's episodes as
`deployment_failed` with the reason.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from kinitro_dagster.miners.cycle_deployments import CycleDeploymentPool, cycle_pool
from kinitro_dagster.miners.deployment_pool import DeploymentPool, shared_pool
from kinitro_dagster.miners.deployments import Deployment, DeploymentError, LocalDeployment, start_all
from kinitro_dagster.miners.docker_deployment import DockerOptions
from kinitro_dagster.miners.policy_client import ClientSettings
from kinitro_dagster.miners.runtimes import (
    Runtime,
    RuntimeBuildError,
    RuntimeSettings,
    ensure_image_runtime,
    ensure_venv_runtime,
)
from kinitro_dagster.protocol import ErrorKind
from kinitro_dagster.settings import executor_default
from kinitro_dagster.sim.base import EnvConfig
from kinitro_dagster.sim.episode import MinerTarget
from kinitro_dagster.sim.workers import evaluate_partition
from kinitro_dagster.warehouse.records import EpisodeRecord, failed_episodes

log = logging.getLogger(__name__)

_PARALLEL_RUNTIME_BUILDS = 4  # distinct runtimes built at once (uv and pip are network- and disk-bound)


@dataclass(frozen=True)
class PolicyUnderTest:
    uid: int
    policy_dir: Path  # the miner's snapshot: a Kinitro miner template directory
    # Docker mode's cache key and container labels; read from a hub-cache snapshot path when None.
    repo: str | None = None
    revision: str | None = None


@dataclass(frozen=True)
class PartitionSettings:
    """How a partition deploys its policies and plays: one object from the Evaluator down, its
    fields named as the settings are (`KINITRO_EXECUTOR_*`)."""

    env: EnvConfig = field(default_factory=EnvConfig)
    client: ClientSettings = field(default_factory=ClientSettings)  # the act timeout, the client's limits
    warmup_timeout: float = executor_default("miner_deployment_warmup_timeout")
    eval_timeout: float | None = None  # one episode's wall-clock budget; None: unbounded
    max_workers: int | None = None
    miners_per_worker: int | None = None
    docker: DockerOptions | None = None  # run policies in containers (None: local subprocesses)
    # Build (or reuse) each policy's declared runtime first (None: every policy runs in the base
    # runtime, whatever it declares).
    runtimes: RuntimeSettings | None = None
    render_devices: tuple[int, ...] = ()  # EGL device of each rollout worker in turn; (): MuJoCo's choice


def evaluate_env_partition(
    env_id: str,
    policies: list[PolicyUnderTest],
    seeds: list[int],
    settings: PartitionSettings | None = None,
    *,
    docker_pool: DeploymentPool | CycleDeploymentPool | None = None,
    scope: str | None = None,
) -> list[EpisodeRecord]:
    """Every policy plays `seeds` on `env_id`, deployed and played as `settings` say.

    `scope`: in docker mode, share deployments with this host's other partitions of that scope (a
    cycle) for as long as they are used (`docker_pool` overrides).
    """
    settings = settings or PartitionSettings()
    docker, runtimes = settings.docker, settings.runtimes
    pool = None
    if docker is not None:
        pool = docker_pool if docker_pool is not None else cycle_pool(scope) if scope else shared_pool()
    records: list[EpisodeRecord] = []
    deployments: dict[int, Deployment] = {}
    prepared = prepare_runtimes(policies, runtimes, docker) if runtimes is not None else {}
    for policy in policies:
        runtime = prepared.get(policy.uid)
        if isinstance(runtime, RuntimeBuildError):
            reason = f"runtime not built: {runtime.reason}"
            records += failed_episodes(policy.uid, seeds, ErrorKind.DEPLOYMENT_FAILED, reason)
            continue
        try:
            if pool is not None and docker is not None:
                options = docker if runtime is None else dataclasses.replace(docker, image=runtime.location)
                deployments[policy.uid] = pool.acquire(policy.policy_dir, options, repo=policy.repo,
                                                       revision=policy.revision)
            else:
                python = runtime.python if runtime is not None else sys.executable
                deployments[policy.uid] = LocalDeployment(policy.policy_dir, python=python,
                                                          warmup_timeout=settings.warmup_timeout)
        except DeploymentError as exc:  # not a miner template directory, a snapshot unusable in a container
            records += failed_episodes(policy.uid, seeds, ErrorKind.DEPLOYMENT_FAILED, str(exc))
    failed: dict[int, DeploymentError] = {}
    ok = False
    try:
        # A deployment reused from the cache is already up; only new ones are started.
        fresh = {uid: d for uid, d in deployments.items() if not d.is_alive()}
        errors = start_all(list(fresh.values()))
        failed = {uid: error for uid, error in zip(fresh, errors, strict=True) if error is not None}
        for uid, error in failed.items():
            records += failed_episodes(uid, seeds, ErrorKind.DEPLOYMENT_FAILED, str(error))
        targets = [MinerTarget(uid=uid, base_url=d.base_url, pid=d.pid, observation=d.observation)
                   for uid, d in deployments.items() if uid not in failed]
        if targets:
            records += evaluate_partition(env_id, targets, seeds, settings.env, max_workers=settings.max_workers,
                                          miners_per_worker=settings.miners_per_worker,
                                          client_settings=settings.client, eval_timeout=settings.eval_timeout,
                                          render_devices=settings.render_devices)
        ok = True
    finally:
        if pool is None:
            for deployment in deployments.values():
                deployment.stop()
        else:
            pool.release([d for uid, d in deployments.items() if uid in failed], failed=True)
            pool.release([d for uid, d in deployments.items() if uid not in failed], failed=not ok)
    return sorted(records, key=lambda r: (r.uid, r.episode))


def prepare_runtimes(
    policies: list[PolicyUnderTest], runtimes: RuntimeSettings, docker: DockerOptions | None = None
) -> dict[int, Runtime | RuntimeBuildError | None]:
    """Each policy's runtime (None: the base runtime), or the RuntimeBuildError that fails its miner.

    Built a few at once; policies with the same declarations share one runtime (one builds, the
    others wait on its lock and reuse it). A RuntimeSetupError (no uv), DockerSetupError or DiskFull
    (the host's disk, not the miner's fault) propagates.
    """

    def one(policy: PolicyUnderTest) -> Runtime | RuntimeBuildError | None:
        try:
            if docker is not None:
                runtime = ensure_image_runtime(policy.policy_dir, runtimes, docker.image)
            else:
                runtime = ensure_venv_runtime(policy.policy_dir, runtimes)
        except RuntimeBuildError as error:
            log.warning("miner runtime failed uid=%d: %s", policy.uid, error.reason,
                        extra={"uid": policy.uid, "runtime_error": error.reason})  # fmt: skip
            return error
        if runtime is not None:
            size = f"{runtime.size_bytes / 2**20:.0f}" if runtime.size_bytes is not None else "?"
            log.info("miner runtime uid=%d id=%s %s in %.2f s packages=%d size_mib=%s", policy.uid, runtime.id[:16],
                     "built" if runtime.built else "reused", runtime.seconds, len(runtime.pins), size,
                     extra={"uid": policy.uid, "runtime_id": runtime.id, "built": runtime.built})  # fmt: skip
        return runtime

    if not policies:
        return {}
    with ThreadPoolExecutor(max_workers=min(_PARALLEL_RUNTIME_BUILDS, len(policies)),
                            thread_name_prefix="runtime") as builders:  # fmt: skip
        return dict(zip([p.uid for p in policies], builders.map(one, policies), strict=True))
