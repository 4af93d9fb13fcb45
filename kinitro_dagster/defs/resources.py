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

from kinitro_dagster.audit.signing import SigningKey, check_hotkey_file, demo_hotkey, wallet_hotkey
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
from kinitro_dagster.sim.partition import PartitionSettings, PolicyUnderTest, evaluate_env_partition
from kinitro_dagster.sim.replay import env_config_of
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


class SigningResource(dg.ConfigurableResource):
    """The hotkey that signs published weights: a bittensor wallet's, or the demo's throwaway one."""

    wallet_name: str | None = None  # None: a throwaway hotkey under <state dir>/wallets
    wallet_hotkey: str = "default"
    wallet_path: str = "~/.bittensor/wallets"

    def key(self) -> SigningKey:
        if self.wallet_name:
            return wallet_hotkey(self.wallet_name, self.wallet_hotkey, self.wallet_path)
        key = demo_hotkey(state_dir() / "wallets")
        log.warning("signing weights with a throwaway demo hotkey (%s): validators cannot trust it; name a "
                    "wallet with KINITRO_SCHEDULER_WALLET_NAME", key.ss58_address)
        return key


class CycleConfig(dg.ConfigurableResource):
    """What a cycle is: how often one opens, how many episodes, how seeds and weights are made."""

    eval_interval_blocks: int = 300
    episodes_per_env: int = 50
    seed_secret: str = DEMO_SEED_SECRET
    pareto_temperature: float = 1.0
    cycle_timeout_seconds: int = 7200

    def seeds(self, block_hash: str, env_id: str, count: int) -> list[int]:
        return episode_seeds(self.seed_secret, block_hash, env_id, count)


# The settings class holds every default; the Evaluator's fields take them from it.
_DEFAULTS = {name: field.get_default(call_default_factory=True)
             for name, field in ExecutorSettings.model_fields.items()}  # fmt: skip
# Per host, not recorded per cycle: shown in each episode partition's metadata.
_RUN_SETTINGS = {
    "eval_mode", "max_workers", "miners_per_worker", "miner_deployment_image", "miner_deployment_cpu",
    "miner_deployment_memory", "miner_deployment_ttl_seconds", "miner_deployment_gpu_count",
    "miner_deployment_warmup_timeout", "miner_runtimes", "miner_runtime_index_url", "miner_runtime_extra_index_url",
    "miner_runtime_max_size", "miner_runtime_build_timeout", "render_devices", "miners_per_shard",
    "step_executor",
}


class Evaluator(dg.ConfigurableResource):
    """Deploys the cycle's policies and plays their episodes on one env.

    Its fields are `ExecutorSettings` fields (`KINITRO_EXECUTOR_<NAME>`), with the same names and the
    settings' defaults. `eval_mode`: "local" runs each policy as a subprocess (not isolated:
    development and the demo); "docker" runs it sandboxed in the miner-runner image
    (`kinitro env build miner`) with the `miner_deployment_*` limits; the partitions of a cycle on
    one Docker host share a (repo, revision)'s container until it has been idle for
    `miner_deployment_ttl_seconds` or the cycle is scored (`retire_deployments`). `miner_runtimes`:
    a policy's declared requirements are installed (wheels only, resolved by uv from
    `miner_runtime_index_url`) into a shared runtime under `<state dir>/runtimes` before it is
    deployed. The episode settings here (steps, timeouts, images, privileged state) are what a
    *new* cycle records; a cycle's episodes always play with the settings its own record holds.
    """

    eval_mode: str = _DEFAULTS["eval_mode"]
    max_timesteps: int = _DEFAULTS["max_timesteps"]
    action_timeout: float = _DEFAULTS["action_timeout"]
    eval_timeout: float = _DEFAULTS["eval_timeout"]  # one episode's wall-clock budget
    use_images: bool = _DEFAULTS["use_images"]
    privileged_state: bool = _DEFAULTS["privileged_state"]
    physics_randomization: bool = _DEFAULTS["physics_randomization"]
    render_mesh_detail: float = _DEFAULTS["render_mesh_detail"]
    max_workers: int | None = _DEFAULTS["max_workers"]
    # Miners a worker plays at once, stepping one env while other policies compute.
    miners_per_worker: int | None = _DEFAULTS["miners_per_worker"]
    render_devices: list[int] = _DEFAULTS["render_devices"]  # EGL device per rollout worker, in turn
    miners_per_shard: int | None = _DEFAULTS["miners_per_shard"]  # a partition's miners per step; None: all
    step_executor: str = _DEFAULTS["step_executor"]  # how a run's steps execute: defs/executors.py
    miner_deployment_warmup_timeout: float = _DEFAULTS["miner_deployment_warmup_timeout"]
    miner_deployment_image: str = _DEFAULTS["miner_deployment_image"]
    miner_deployment_cpu: float = _DEFAULTS["miner_deployment_cpu"]
    miner_deployment_memory: str = _DEFAULTS["miner_deployment_memory"]
    miner_deployment_ttl_seconds: float = _DEFAULTS["miner_deployment_ttl_seconds"]
    miner_deployment_gpu_count: int = _DEFAULTS["miner_deployment_gpu_count"]
    miner_deployment_min_gpu_memory_gb: float | None = _DEFAULTS["miner_deployment_min_gpu_memory_gb"]
    miner_runtimes: bool = _DEFAULTS["miner_runtimes"]
    miner_runtime_index_url: str = _DEFAULTS["miner_runtime_index_url"]
    miner_runtime_extra_index_url: str | None = _DEFAULTS["miner_runtime_extra_index_url"]
    miner_runtime_max_size: str = _DEFAULTS["miner_runtime_max_size"]
    miner_runtime_build_timeout: float = _DEFAULTS["miner_runtime_build_timeout"]

    @classmethod
    def from_settings(cls, executor: ExecutorSettings) -> Evaluator:
        """The evaluator of these settings: every field copied by name."""
        return cls(**executor.model_dump(include=set(cls.model_fields)))

    def docker_options(self) -> DockerOptions | None:
        """Container settings in docker mode; None in local mode."""
        if self.eval_mode == "local":
            return None
        if self.eval_mode != "docker":
            raise ValueError(
                f"eval mode {self.eval_mode!r} is unknown; set KINITRO_EXECUTOR_EVAL_MODE to local or docker"
            )
        return DockerOptions(image=self.miner_deployment_image, cpus=self.miner_deployment_cpu,
                             memory=self.miner_deployment_memory, ttl_s=self.miner_deployment_ttl_seconds,
                             warmup_timeout=self.miner_deployment_warmup_timeout,
                             gpu_count=self.miner_deployment_gpu_count,
                             min_gpu_memory_gb=self.miner_deployment_min_gpu_memory_gb)  # fmt: skip

    def runtime_settings(self) -> RuntimeSettings | None:
        """How per-miner runtimes are built; None when they are off (every policy runs in the base runtime)."""
        if not self.miner_runtimes:
            return None
        return RuntimeSettings(
            root=state_dir() / "runtimes",
            index_url=self.miner_runtime_index_url, extra_index_url=self.miner_runtime_extra_index_url or None,
            max_size=self.miner_runtime_max_size, build_timeout_s=self.miner_runtime_build_timeout,
            build_cpus=self.miner_deployment_cpu, build_memory=self.miner_deployment_memory,
        )

    def run_settings(self) -> dict[str, object]:
        """What this process deploys and runs with (not recorded per cycle: it is per host)."""
        return self.model_dump(include=_RUN_SETTINGS)

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
        settings = PartitionSettings(
            env=env_config_of(cycle), client=ClientSettings(action_timeout=cycle.action_timeout),
            warmup_timeout=self.miner_deployment_warmup_timeout, eval_timeout=cycle.eval_timeout,
            max_workers=self.max_workers, miners_per_worker=self.miners_per_worker, docker=self.docker_options(),
            runtimes=self.runtime_settings(), render_devices=tuple(self.render_devices),
        )
        return evaluate_env_partition(env_id, policies, seeds, settings, scope=cycle_key)

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
        action_timeout=evaluator.action_timeout, eval_timeout=evaluator.eval_timeout,
        use_images=evaluator.use_images, privileged_state=evaluator.privileged_state,
        pareto_temperature=cycle_config.pareto_temperature, cycle_timeout_seconds=cycle_config.cycle_timeout_seconds,
        code_version=code_version(), physics_randomization=evaluator.physics_randomization,
        render_mesh_detail=evaluator.render_mesh_detail,
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


def step_output_manager() -> dg.FilesystemIOManager:
    """Step outputs (a shard's played episodes) under `<state dir>/step-outputs/<run id>/`: a path
    every run and step container mounts, so a step's output reaches the next step's container."""
    return dg.FilesystemIOManager(base_dir=str(state_dir() / "step-outputs"))


def build_resources(
    scheduler: SchedulerSettings | None = None, executor: ExecutorSettings | None = None
) -> dict[str, dg.ConfigurableResource | dg.ConfigurableIOManager]:
    check_environment()
    scheduler = scheduler or SchedulerSettings()
    executor = executor or ExecutorSettings()
    configure_service_logging(scheduler.log_level, executor.log_level, scheduler.json_logs or executor.json_logs)
    if not os.environ.get("KINITRO_SEED_SECRET"):
        log.warning("KINITRO_SEED_SECRET is not set: using the public demo secret, so seeds are predictable")
    if scheduler.wallet_name:
        check_hotkey_file(scheduler.wallet_name, scheduler.wallet_hotkey, scheduler.wallet_path)
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
        "evaluator": Evaluator.from_settings(executor),
        "signing": SigningResource(wallet_name=scheduler.wallet_name, wallet_hotkey=scheduler.wallet_hotkey,
                                   wallet_path=scheduler.wallet_path),
        "io_manager": step_output_manager(),
    }
