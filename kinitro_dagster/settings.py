"""Typed configuration, read once from flags or `KINITRO_*` environment variables.

The CLI, the weights API and the Dagster resources all build on these classes; there is no
second parser for the same variable. Names follow the operator's guide: `KINITRO_API_*`,
`KINITRO_SCHEDULER_*`, `KINITRO_EXECUTOR_*`. One database URL serves every service:
`KINITRO_DATABASE_URL` applies wherever the service-specific variable is unset.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, BeforeValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Accepts any case (`debug` as the flag does), stored upper-case for `logging`.
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(lambda v: str(v).upper())]
# An optional count set to "" means "not set": compose files and launchers forward variables the
# operator left empty (deploy/.env.example) as empty strings.
OptionalCount = Annotated[Annotated[int, Field(ge=1)] | None, BeforeValidator(lambda v: None if v == "" else v)]

DEMO_SEED_SECRET = "kinitro-demo-secret-not-for-production"


def state_dir() -> Path:
    """Where the embedded default keeps its files (SQLite warehouse, chain file, caches)."""
    return Path(os.environ.get("KINITRO_STATE_DIR", Path.cwd() / ".kinitro")).resolve()


def default_database_url() -> str:
    return f"sqlite:///{state_dir() / 'warehouse.db'}"


def _database_url_field(service: str) -> object:
    return Field(
        default_factory=default_database_url,
        validation_alias=AliasChoices(f"KINITRO_{service}_DATABASE_URL", "KINITRO_DATABASE_URL"),
    )


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KINITRO_API_", populate_by_name=True, extra="ignore")

    host: str = "0.0.0.0"
    port: int = 8000
    database_url: str = _database_url_field("API")
    log_level: LogLevel = "INFO"
    json_logs: bool = False


class SchedulerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KINITRO_SCHEDULER_", populate_by_name=True, extra="ignore")

    database_url: str = _database_url_field("SCHEDULER")
    chain: Literal["file", "bittensor"] = "file"
    chain_file: Path | None = None  # file chain: YAML of miners; default under the state dir
    network: str = "finney"
    netuid: int = 1
    eval_interval_seconds: int = 3600
    # Blocks between cycles on the chain clock (12 s blocks); derived from the interval by default.
    eval_interval_blocks: int | None = None
    episodes_per_env: int = 50
    env_ids: list[str] | None = None  # None: every registered env
    pareto_temperature: float = 1.0
    cycle_timeout_seconds: int = 7200
    log_level: LogLevel = "INFO"
    seed_secret: str = Field(default=DEMO_SEED_SECRET, validation_alias="KINITRO_SEED_SECRET")

    @property
    def interval_blocks(self) -> int:
        if self.eval_interval_blocks is not None:
            return self.eval_interval_blocks
        return max(1, self.eval_interval_seconds // 12)


class ExecutorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KINITRO_EXECUTOR_", populate_by_name=True, extra="ignore")

    eval_mode: Literal["local", "docker"] = "local"
    max_timesteps: int = 500
    action_timeout: float = 0.5
    eval_timeout: float = 300.0
    use_images: bool = True
    privileged_state: bool = True  # the demo track sends MetaWorld's 39-d state in extra["state"]
    max_workers: OptionalCount = None  # parallel miner shards in a partition; None: the cores given
    # Miners each worker plays at once (one env each): it steps whichever miner's policy has answered,
    # so its core does not idle while a policy computes. Each costs one more env in memory.
    # None: 2 without images, 1 with them (rendering is then most of a step).
    miners_per_worker: OptionalCount = None
    miner_hf_token: str | None = None
    miner_deployment_image: str = "kinitro/miner-runner:v1"
    miner_deployment_ttl_seconds: int = 600
    miner_deployment_warmup_timeout: float = 300.0
    miner_deployment_cpu: float = 1.0
    miner_deployment_memory: str = "4Gi"
    log_level: LogLevel = "INFO"
