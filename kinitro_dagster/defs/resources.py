"""Dagster resources: typed configuration plus the handle each asset asks to do its work.

Values come from the settings classes (`KINITRO_*` variables), built in `build_resources`, the
one place they are instantiated. Secrets are passed as `EnvVar`s so the UI shows their names,
never their values.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg

from kinitro_dagster.logs import configure_service_logging
from kinitro_dagster.miners.chain import ChainReader, FileChain
from kinitro_dagster.miners.cycle_deployments import RetireReport, retire_scope
from kinitro_dagster.miners.docker_deployment import DockerOptions
from kinitro_dagster.miners.hub import Snapshot, fetch_snapshot
from kinitro_dagster.miners.policy_client import ClientSettings
from kinitro_dagster.miners.runtimes import RuntimeSettings
from kinitro_dagster.settings import (
    DEMO_SEED_SECRET,
    ExecutorSettings,
    SchedulerSettings,
    check_environment,
    state_dir,
)
from kinitro_dagster.sim.base import EnvConfig
from kinitro_dagster.sim.partition import PolicyUnderTest, evaluate_env_partition
from kinitro_dagster.sim.seeds import episode_seeds
from kinitro_dagster.version import code_version
from kinitro_dagster.warehouse.records import CycleConfiguration, CycleRecord, EpisodeRecord
from kinitro_dagster.warehouse.store import Warehouse

log = logging.getLogger(__name__)


@cache
def _warehouse(url: str) -> Warehouse:
    warehouse = Warehouse(url)
    warehouse.migrate()
    return warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The evaluation warehouse (SQLite file by default, PostgreSQL in production)."""

    database_url: str

    def store(self) -> Warehouse:
        return _warehouse(self.database_url)


class ChainResource(dg.ConfigurableResource):
    """Where cycles get their clock and miners their commitments."""

    kind: str = "file"
    chain_file: str = ""
    network: str = "finney"
    netuid: int = 1

    def reader(self) -> ChainReader:
        if self.kind == "file":
            return FileChain(self.chain_file or state_dir() / "chain.yaml")
        if self.kind == "bittensor":
            from kinitro_dagster.miners.bittensor_chain import BittensorChain

            return BittensorChain(self.network, self.netuid)
        raise ValueError(f"chain kind {self.kind!r} is unknown; set KINITRO_SCHEDULER_CHAIN to 'file' or 'bittensor'")


class HubResource(dg.ConfigurableResource):
    """HuggingFace snapshots in a shared cache (offline with HF_HUB_OFFLINE=1)."""

    cache_dir: str
    token: str | None = None

    def fetch(self, repo: str, revision: str) -> Snapshot:
        return fetch_snapshot(repo, revision, cache_dir=Path(self.cache_dir), token=self.token or None)


class CycleConfig(dg.ConfigurableResource):
    """What a cycle is: how often one opens, how many episodes, how seeds and weights are made."""

    eval_interval_blocks: int = 300
    episodes_per_env: int = 50
    seed_secret: str = DEMO_SEED_SECRET
    pareto_temperature: float = 1.0
    cycle_timeout_seconds: int = 7200

    def seeds(self, block_hash: str, env_id: str, count: int) -> list[int]:
        return episode_seeds(self.seed_secret, block_hash, env_id, count)


class Evaluator(dg.ConfigurableResource):
    """Deploys the cycle's policies and plays their episodes on one env.

    `eval_mode`: "local" runs each policy as a subprocess (not isolated: development and the demo);
    "docker" runs it sandboxed in the miner-runner image (`kinitro env build miner`), with the
    `miner_*` limits; the partitions of a cycle on one Docker host share a (repo, revision)'s
    container until it has been idle for `miner_ttl_s` or the cycle is scored (`retire_deployments`).
    `miner_runtimes`: a policy's declared requirements are installed (wheels only, resolved by uv
    from `miner_runtime_index_url`) into a shared runtime under `<state dir>/runtimes` before it is deployed.
    The episode settings here (steps, timeouts, images, privileged state) are what a *new* cycle
    records; a cycle's episodes always play with the settings its own record holds.
    """

    eval_mode: str = "local"
    max_timesteps: int = 500
    action_timeout_s: float = 0.5
    use_images: bool = True
    privileged_state: bool = False
    max_workers: int | None = None
    # Miners a worker plays at once, stepping one env while other policies compute (None: 2 without
    # images, 1 with them).
    miners_per_worker: int | None = None
    warmup_timeout_s: float = 120.0
    eval_timeout_s: float = 300.0  # one episode's wall-clock budget
    miner_image: str = "kinitro/miner-runner:v1"
    miner_cpus: float = 1.0
    miner_memory: str = "4Gi"
    miner_ttl_s: float = 600.0
    miner_gpu_count: int = 0
    miner_min_gpu_memory_gb: float | None = None
    miner_runtimes: bool = True
    miner_runtime_index_url: str = "https://pypi.org/simple"
    miner_runtime_extra_index_url: str | None = None
    miner_runtime_max_size: str = "6Gi"
    miner_runtime_build_timeout: float = 1800.0

    def docker_options(self) -> DockerOptions | None:
        """Container settings in docker mode; None in local mode."""
        if self.eval_mode == "local":
            return None
        if self.eval_mode != "docker":
            raise ValueError(
                f"eval mode {self.eval_mode!r} is unknown; set KINITRO_EXECUTOR_EVAL_MODE to local or docker"
            )
        return DockerOptions(image=self.miner_image, cpus=self.miner_cpus, memory=self.miner_memory,
                             ttl_s=self.miner_ttl_s, warmup_timeout_s=self.warmup_timeout_s,
                             gpu_count=self.miner_gpu_count, min_gpu_memory_gb=self.miner_min_gpu_memory_gb)

    def runtime_settings(self) -> RuntimeSettings | None:
        """How per-miner runtimes are built; None when they are off (every policy runs in the base runtime)."""
        if not self.miner_runtimes:
            return None
        return RuntimeSettings(
            root=state_dir() / "runtimes",
            index_url=self.miner_runtime_index_url, extra_index_url=self.miner_runtime_extra_index_url or None,
            max_size=self.miner_runtime_max_size, build_timeout_s=self.miner_runtime_build_timeout,
            build_cpus=self.miner_cpus, build_memory=self.miner_memory,
        )

    def run_settings(self) -> dict[str, object]:
        """What this process deploys and runs with (not recorded per cycle: it is per host)."""
        return {
            "eval_mode": self.eval_mode, "max_workers": self.max_workers, "miners_per_worker": self.miners_per_worker,
            "miner_deployment_image": self.miner_image, "miner_deployment_cpu": self.miner_cpus,
            "miner_deployment_memory": self.miner_memory, "miner_deployment_ttl_seconds": self.miner_ttl_s,
            "miner_deployment_gpu_count": self.miner_gpu_count,
            "miner_deployment_warmup_timeout": self.warmup_timeout_s,
            "miner_runtimes": self.miner_runtimes, "miner_runtime_index_url": self.miner_runtime_index_url,
            "miner_runtime_extra_index_url": self.miner_runtime_extra_index_url,
            "miner_runtime_max_size": self.miner_runtime_max_size,
            "miner_runtime_build_timeout": self.miner_runtime_build_timeout,
        }

    def evaluate(
        self,
        env_id: str,
        policies: list[PolicyUnderTest],
        seeds: list[int],
        cycle: CycleConfiguration,
        cycle_key: str | None = None,
    ) -> list[EpisodeRecord]:
        """Play `seeds` of `env_id` for every policy with the episode settings `cycle` recorded;
        `cycle_key`: the cycle's partitions share their policy deployments (docker mode)."""
        env_config = EnvConfig(max_steps=cycle.max_timesteps, use_images=cycle.use_images,
                               privileged_state=cycle.privileged_state)
        return evaluate_env_partition(
            env_id, policies, seeds, env_config,
            client_settings=ClientSettings(act_timeout_s=cycle.action_timeout),
            warmup_timeout_s=self.warmup_timeout_s, episode_timeout_s=cycle.eval_timeout,
            max_workers=self.max_workers, miners_per_worker=self.miners_per_worker, docker=self.docker_options(),
            scope=cycle_key, runtimes=self.runtime_settings(),
        )

    def retire_deployments(self, cycle_key: str) -> RetireReport | None:
        """Remove the cycle's shared policy containers that no partition holds (docker mode; None in local)."""
        if self.docker_options() is None:
            return None
        return retire_scope(cycle_key)


def cycle_configuration(env_ids: Sequence[str], cycle_config: CycleConfig, evaluator: Evaluator) -> CycleConfiguration:
    """The configuration a cycle opened now records: this process's settings."""
    return CycleConfiguration(
        env_ids=tuple(env_ids), episodes_per_env=cycle_config.episodes_per_env,
        eval_interval_blocks=cycle_config.eval_interval_blocks, max_timesteps=evaluator.max_timesteps,
        action_timeout=evaluator.action_timeout_s, eval_timeout=evaluator.eval_timeout_s,
        use_images=evaluator.use_images, privileged_state=evaluator.privileged_state,
        pareto_temperature=cycle_config.pareto_temperature, cycle_timeout_seconds=cycle_config.cycle_timeout_seconds,
        code_version=code_version(),
    )


def recorded_configuration(
    cycle: CycleRecord, env_ids: Sequence[str], cycle_config: CycleConfig, evaluator: Evaluator
) -> CycleConfiguration:
    """The configuration `cycle` recorded when it opened; for a cycle opened before they were
    recorded, this process's settings (logged, since another process may have had others)."""
    if cycle.config is not None:
        return cycle.config
    log.warning("cycle %s has no recorded configuration (opened before revision 0003): using this "
                "process's settings", cycle.cycle_key)
    return cycle_configuration(env_ids, cycle_config, evaluator)


def _secret(var: str, fallback: str | None) -> Any:
    """An EnvVar when the operator set it (its value never shows in the UI), else the fallback."""
    return dg.EnvVar(var) if os.environ.get(var) else fallback


def build_resources(
    scheduler: SchedulerSettings | None = None, executor: ExecutorSettings | None = None
) -> dict[str, dg.ConfigurableResource]:
    check_environment()
    scheduler = scheduler or SchedulerSettings()
    executor = executor or ExecutorSettings()
    configure_service_logging(scheduler.log_level, executor.log_level, scheduler.json_logs or executor.json_logs)
    if not os.environ.get("KINITRO_SEED_SECRET"):
        log.warning("KINITRO_SEED_SECRET is not set: using the public demo secret, so seeds are predictable")
    return {
        "warehouse": WarehouseResource(database_url=scheduler.database_url),
        "chain": ChainResource(
            kind=scheduler.chain, chain_file=str(scheduler.chain_file or state_dir() / "chain.yaml"),
            network=scheduler.network, netuid=scheduler.netuid,
        ),
        "hub": HubResource(
            cache_dir=str(state_dir() / "hub"), token=_secret("KINITRO_EXECUTOR_MINER_HF_TOKEN", None)
        ),
        "cycle_config": CycleConfig(
            eval_interval_blocks=scheduler.interval_blocks, episodes_per_env=scheduler.episodes_per_env,
            seed_secret=_secret("KINITRO_SEED_SECRET", DEMO_SEED_SECRET),
            pareto_temperature=scheduler.pareto_temperature, cycle_timeout_seconds=scheduler.cycle_timeout_seconds,
        ),
        "evaluator": Evaluator(
            eval_mode=executor.eval_mode, max_timesteps=executor.max_timesteps,
            action_timeout_s=executor.action_timeout, use_images=executor.use_images,
            privileged_state=executor.privileged_state, max_workers=executor.max_workers,
            miners_per_worker=executor.miners_per_worker,
            warmup_timeout_s=executor.miner_deployment_warmup_timeout, eval_timeout_s=executor.eval_timeout,
            miner_image=executor.miner_deployment_image, miner_cpus=executor.miner_deployment_cpu,
            miner_memory=executor.miner_deployment_memory, miner_ttl_s=executor.miner_deployment_ttl_seconds,
            miner_gpu_count=executor.miner_deployment_gpu_count,
            miner_min_gpu_memory_gb=executor.miner_deployment_min_gpu_memory_gb,
            miner_runtimes=executor.miner_runtimes, miner_runtime_index_url=executor.miner_runtime_index_url,
            miner_runtime_extra_index_url=executor.miner_runtime_extra_index_url,
            miner_runtime_max_size=executor.miner_runtime_max_size,
            miner_runtime_build_timeout=executor.miner_runtime_build_timeout,
        ),
    }
