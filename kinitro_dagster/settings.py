"""Typed configuration, read once from flags or `KINITRO_*` environment variables.

The CLI, the weights API and the Dagster resources all build on these classes; there is no
second parser for the same variable. Names follow the operator's guide: `KINITRO_API_*`,
`KINITRO_SCHEDULER_*`, `KINITRO_EXECUTOR_*`. One database URL serves every service:
`KINITRO_DATABASE_URL` applies wherever the service-specific variable is unset.

Every `KINITRO_*` variable a process sees must be one of these settings (or one of
`OTHER_VARIABLES`): `check_environment` refuses a misspelt one at start-up, naming the nearest
valid name, and refuses a guide setting that has no meaning here with what to use instead.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BeforeValidator, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kinitro_dagster.sizes import parse_memory

# Accepts any case (`debug` as the flag does), stored upper-case for `logging`.
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(lambda v: str(v).upper())]
# An optional value set to "" means "not set": compose files and launchers forward variables the
# operator left empty (deploy/.env.example) as empty strings.
_EMPTY_IS_UNSET = BeforeValidator(lambda v: None if v == "" else v)
OptionalCount = Annotated[Annotated[int, Field(ge=1)] | None, _EMPTY_IS_UNSET]
OptionalText = Annotated[str | None, _EMPTY_IS_UNSET]
_EMPTY_IS_ZERO = BeforeValidator(lambda v: 0 if v == "" else v)

DEMO_SEED_SECRET = "kinitro-demo-secret-not-for-production"
PREFIX = "KINITRO_"

# KINITRO_* variables read by something other than these classes: name -> what reads it.
OTHER_VARIABLES = {
    "KINITRO_STATE_DIR": "state_dir(): SQLite files, chain file, hub cache",
    "KINITRO_EVALUATOR_IMAGE": "deploy/dagster.yaml: the run image of families without their own in "
                               "KINITRO_EXECUTOR_EVAL_IMAGES",
    "KINITRO_RUN_NETWORK": "deploy/dagster.yaml: the network run containers join",
    "KINITRO_WAREHOUSE_DB": "deploy/postgres-init.sh: the warehouse database's name",
    "KINITRO_APP_DIR": "sim_images/evaluator/build.sh: where the code goes in the image",
    "KINITRO_G1_ASSETS_DIR": "sim/g1_model.py: the Unitree G1 meshes and body (sim_images/genesis/fetch-g1-assets.sh)",
}
# Paths on the host that mean nothing in a run container (its image sets its own).
HOST_ONLY_VARIABLES = frozenset({"KINITRO_G1_ASSETS_DIR"})
# Variables of the test suite, never read by a service.
TEST_PREFIX = "KINITRO_TEST_"


class UnknownSettingError(ValueError):
    """A KINITRO_* variable no service reads (misspelt, or from another version)."""


class UnsupportedSettingError(ValueError):
    """A guide setting that has no meaning on Dagster and was given a value."""


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


def _refused(why: str, *, allowed: tuple[str, ...] = ()) -> object:
    """A guide setting kept so its name is known: a value other than `allowed` (what this backend
    does anyway, e.g. the guide's default) is refused with `why`, which says what to use instead."""
    return Field(default=None, json_schema_extra={"refused": why, "allowed": list(allowed)})


def _normalized(value: str) -> str:
    return re.sub(r"[\s'\"]", "", value).lower()


STALE_THRESHOLD_REFUSAL = (
    "there are no tasks to go stale here: a run that does not start or stops reporting is failed by "
    "Dagster's run monitoring; set run_monitoring.start_timeout_seconds and cancel_timeout_seconds in "
    "dagster.yaml (deploy/dagster.yaml in production)"
)


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KINITRO_API_", populate_by_name=True, extra="ignore")

    host: str = "0.0.0.0"
    port: int = 8000
    database_url: str = _database_url_field("API")
    log_level: LogLevel = "INFO"
    json_logs: bool = False
    task_stale_threshold_seconds: OptionalText = _refused(STALE_THRESHOLD_REFUSAL)


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
    episodes_per_env: int = Field(default=50, ge=1)
    env_ids: list[str] | None = None  # None: every registered env
    pareto_temperature: float = Field(default=1.0, gt=0)
    # A cycle's deadline: each of its runs gets this as dagster/max_runtime, and a cycle not scored
    # by then is scored with the episodes it has (the missing ones count as failures).
    cycle_timeout_seconds: int = Field(default=7200, ge=60)
    log_level: LogLevel = "INFO"
    json_logs: bool = False
    seed_secret: str = Field(default=DEMO_SEED_SECRET, validation_alias="KINITRO_SEED_SECRET")
    # The hotkey that signs each published weights row (a bittensor wallet's: <path>/<name>/hotkeys/
    # <hotkey>). No name: a throwaway hotkey under <state dir>/wallets, which proves nothing.
    wallet_name: OptionalText = None
    wallet_hotkey: str = "default"
    wallet_path: str = "~/.bittensor/wallets"
    task_stale_threshold_seconds: OptionalText = _refused(STALE_THRESHOLD_REFUSAL)

    @property
    def interval_blocks(self) -> int:
        if self.eval_interval_blocks is not None:
            return self.eval_interval_blocks
        return max(1, self.eval_interval_seconds // 12)


class ExecutorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KINITRO_EXECUTOR_", populate_by_name=True, extra="ignore")

    eval_mode: Literal["local", "docker"] = "local"
    max_timesteps: int = Field(default=500, ge=1)
    action_timeout: float = Field(default=0.5, gt=0)
    eval_timeout: float = Field(default=300.0, gt=0)
    use_images: bool = True
    # The demo track only (`kinitro demo` turns it on): in obs.extra["state"], MetaWorld's 39-d state
    # (goal visible) or the humanoid's task object positions. Off, a miner sees what Kinitro's miners
    # see: proprio and cameras.
    privileged_state: bool = False
    # MetaWorld physics randomization, as Kinitro evaluates: each episode scales every geom's
    # friction by U(0.8, 1.2) and every joint's damping by U(0.9, 1.1), drawn from its seed and
    # applied to the model's original values. Not in the operator's guide (Kinitro always does it).
    physics_randomization: bool = True
    # Fraction of each large MetaWorld mesh's triangles the cameras draw (sim/mesh_detail.py): a
    # frame's cost under software GL is its triangles. 1.0 draws the full meshes, the frames miners
    # trained on; 0.2 draws a frame 2.4x faster, within mesh_detail.FRAME_TOLERANCE of them, yet a
    # vision policy trained on full-mesh frames may fail on it: announce a change to miners first.
    render_mesh_detail: float = Field(default=1.0, gt=0, le=1)
    max_workers: OptionalCount = None  # rollout worker processes of a partition's step; None: the cores given
    # Miners each step of an episode partition plays (`play_shard`): the partition's miners in shards,
    # one step each, which the job's executor runs as processes (or containers, pods) of their own.
    # None: one step plays them all. Rows are the same whatever the sharding.
    miners_per_shard: OptionalCount = None
    # How each step of a run executes (defs/executors.py): "process", a process of the run's container
    # (Dagster's multiprocess executor); "docker", a container of its own on the run's Docker engine,
    # with the run container's image, settings and mounts (dagster-docker's step-delegating executor);
    # "k8s", a pod of its own (dagster-k8s's k8s_job_executor, beside its K8sRunLauncher).
    step_executor: Literal["process", "docker", "k8s"] = "process"
    # Miners each worker plays at once (one env each): it steps whichever miner's policy has answered,
    # so its core does not idle while a policy computes. Each costs one more env in memory.
    # None: 3 without images, 1 with them (rendering is then most of a step).
    miners_per_worker: OptionalCount = None
    # Production run containers (deploy/dagster.yaml's KinitroDockerRunLauncher): image per env
    # family (others: KINITRO_EVALUATOR_IMAGE) and each container's memory limit.
    eval_images: dict[str, str] = Field(default_factory=dict)
    eval_mem_limit: OptionalText = Field(
        default="8g", validation_alias=AliasChoices("KINITRO_EXECUTOR_EVAL_MEM_LIMIT", "KINITRO_BACKEND_EVAL_MEM_LIMIT")
    )
    # NVIDIA GPUs each production run container gets (a Docker device request with the graphics
    # capability, so MuJoCo's EGL renders on them); 0: none, frames are drawn on the CPU (llvmpipe).
    eval_gpu_count: Annotated[int, Field(ge=0), _EMPTY_IS_ZERO] = 0
    # EGL devices the rollout workers render on, one each in turn (MuJoCo's MUJOCO_EGL_DEVICE_ID, as
    # eglQueryDevicesEXT numbers them: a run container's GPUs first); []: MuJoCo's choice, the first.
    render_devices: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list)
    # The run queue (deploy/dagster.yaml's EnvFamilyRunCoordinator): runs at once, seconds between
    # dequeues, and a run tag naming this backend.
    batch_size: OptionalCount = None
    poll_interval_seconds: OptionalCount = None
    executor_id: OptionalText = None
    # `kinitro executor` checks that the weights API answers here when it starts.
    api_url: str = "http://localhost:8000"
    miner_hf_token: str | None = None
    miner_deployment_image: str = "kinitro/miner-runner:v1"
    miner_deployment_ttl_seconds: int = 600
    miner_deployment_warmup_timeout: float = 300.0
    miner_deployment_cpu: float = 1.0
    miner_deployment_memory: str = "4Gi"
    # Per-miner runtimes (kinitro_dagster/miners/runtimes.py): a policy's requirements.txt (and
    # pyproject.toml dependencies) resolved with uv and installed from wheels into a shared,
    # content-addressed runtime under <state dir>/runtimes (docker mode: an image layer). False: every
    # policy runs in the base runtime (this venv, the miner-runner image) whatever it declares.
    miner_runtimes: bool = True
    miner_runtime_index_url: str = "https://pypi.org/simple"
    miner_runtime_extra_index_url: OptionalText = None  # e.g. https://download.pytorch.org/whl/cpu
    miner_runtime_max_size: str = "6Gi"  # installed size of one runtime; over it the build fails
    miner_runtime_build_timeout: float = Field(default=1800.0, gt=0)  # seconds, resolve + install
    log_level: LogLevel = "INFO"
    json_logs: bool = False

    env_ids: OptionalText = _refused(
        "one code location evaluates every enabled env: choose them with KINITRO_SCHEDULER_ENV_IDS, and "
        "limit how many runs of a family run at once with the kinitro/env_family tag limits in "
        "deploy/dagster.yaml", allowed=("null",))
    eval_hosts: OptionalText = _refused(
        "a daemon launches run containers on the Docker host of its own DOCKER_HOST; to spread runs over "
        "many hosts run the same images under dagster-k8s (K8sRunLauncher), see README 'Bigger fleets'",
        allowed=('["localhost"]',))
    miner_deployment_enabled: OptionalText = _refused(
        "this backend always deploys committed policies itself (repo:revision from the chain); there are "
        "no miner-hosted endpoints to call: remove the variable", allowed=("true", "1"))
    miner_basilica_api_token: OptionalText = _refused(
        "Basilica is not supported: set KINITRO_EXECUTOR_EVAL_MODE=docker (sandboxed containers on this "
        "host's dockerd)")
    # Docker eval mode: each policy container gets this many NVIDIA GPUs (a Docker device request),
    # each with at least this much memory; a host without them fails the deployment, never runs
    # the policy on the CPU instead.
    miner_deployment_gpu_count: Annotated[int, Field(ge=0), _EMPTY_IS_ZERO] = 0
    miner_deployment_min_gpu_memory_gb: Annotated[float | None, Field(gt=0), _EMPTY_IS_UNSET] = None

    @field_validator("miner_runtime_max_size")
    @classmethod
    def _a_size(cls, value: str) -> str:
        parse_memory(value)  # ValueError: says what a size looks like
        return value

    @field_validator("eval_mode", mode="before")
    @classmethod
    def _no_basilica(cls, value: object) -> object:
        if str(value).lower() == "basilica":
            raise ValueError("eval mode 'basilica' is not supported: use docker (KINITRO_EXECUTOR_EVAL_MODE=docker)")
        return value

    @model_validator(mode="after")
    def _gpus_need_docker(self) -> ExecutorSettings:
        wants_gpu = self.miner_deployment_gpu_count > 0 or self.miner_deployment_min_gpu_memory_gb is not None
        if wants_gpu and self.eval_mode != "docker":
            raise ValueError("GPU miner deployments (KINITRO_EXECUTOR_MINER_DEPLOYMENT_GPU_COUNT, "
                             "_MIN_GPU_MEMORY_GB) need KINITRO_EXECUTOR_EVAL_MODE=docker: a local policy is not "
                             "isolated and sees every GPU")
        if self.miner_deployment_min_gpu_memory_gb is not None and self.miner_deployment_gpu_count == 0:
            raise ValueError("KINITRO_EXECUTOR_MINER_DEPLOYMENT_MIN_GPU_MEMORY_GB is set but _GPU_COUNT is 0: "
                             "set the GPU count too")
        return self


SETTINGS_CLASSES: tuple[type[BaseSettings], ...] = (ApiSettings, SchedulerSettings, ExecutorSettings)


def _variable_names(cls: type[BaseSettings]) -> Iterator[tuple[str, str]]:
    """(environment variable, field name) for every variable that sets a field of `cls`."""
    prefix = cls.model_config.get("env_prefix", "")
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            yield from ((str(choice), name) for choice in alias.choices)
        elif isinstance(alias, str):
            yield alias, name
        else:
            yield f"{prefix}{name}".upper(), name


def known_variables() -> dict[str, str]:
    """Every KINITRO_* variable a service reads -> what it sets (`Class.field`) or what reads it."""
    known = {var: f"{cls.__name__}.{name}" for cls in SETTINGS_CLASSES for var, name in _variable_names(cls)}
    return {**known, **OTHER_VARIABLES}


def refused_variables() -> dict[str, tuple[str, list[str]]]:
    """Guide settings with no meaning here -> (why and what to use instead, values accepted)."""
    refused = {}
    for cls in SETTINGS_CLASSES:
        for var, name in _variable_names(cls):
            extra = cls.model_fields[name].json_schema_extra
            if isinstance(extra, dict) and "refused" in extra:
                refused[var] = (str(extra["refused"]), [str(v) for v in extra["allowed"]])  # type: ignore[union-attr]
    return refused


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Refuse unknown KINITRO_* variables (naming the nearest valid one) and refused guide settings."""
    environ = os.environ if environ is None else environ
    known, refused = known_variables(), refused_variables()
    problems = []
    for var in sorted(v for v in environ if v.startswith(PREFIX) and not v.startswith(TEST_PREFIX)):
        if var in refused:
            why, allowed = refused[var]
            if environ[var] != "" and _normalized(environ[var]) not in {_normalized(a) for a in allowed}:
                problems.append(f"{var}={environ[var]} is not supported here: {why}")
        elif var not in known:
            nearest = difflib.get_close_matches(var, known, n=1, cutoff=0.6)
            hint = f"did you mean {nearest[0]}?" if nearest else "see README 'Configuration' for the valid names"
            problems.append(f"unknown setting {var}: {hint}")
    if problems:
        error = UnsupportedSettingError if all("not supported" in p for p in problems) else UnknownSettingError
        raise error("; ".join(problems))


def forwarded_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """Names of the variables a run container must inherit from the process that launches it:
    every KINITRO_* setting that is set, plus what the storage, hub and renderer read."""
    environ = os.environ if environ is None else environ
    exact = {"HF_HUB_OFFLINE", "HF_TOKEN", "MUJOCO_GL", "PYOPENGL_PLATFORM", "LP_NUM_THREADS"}
    return sorted(
        var for var in environ
        if (var.startswith(PREFIX) and not var.startswith(TEST_PREFIX) and var not in HOST_ONLY_VARIABLES)
        or var.startswith("DAGSTER_PG_") or var in exact
    )


SECRET_MARKERS = ("SECRET", "TOKEN", "PASSWORD", "DATABASE_URL")


def masked(name: str, value: str) -> str:
    """`value`, or for a secret (a URL may hold a password) a digest that proves which value it is."""
    if value and any(marker in name for marker in SECRET_MARKERS):
        return f"sha256:{hashlib.sha256(value.encode()).hexdigest()[:16]}"
    return value


def describe_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every KINITRO_* variable of this process, secrets masked: what a run shows it was given."""
    environ = os.environ if environ is None else environ
    return {name: masked(name, environ[name]) for name in sorted(environ) if name.startswith(PREFIX)}


def executor_default(name: str) -> Any:
    """The default of `ExecutorSettings.<name>`: what code below the settings uses when no value is
    passed, so that each setting has its default in one place."""
    return ExecutorSettings.model_fields[name].get_default(call_default_factory=True)
