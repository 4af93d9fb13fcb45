"""Settings from the environment, as operators and launchers set them."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from kinitro_dagster.settings import (
    ExecutorSettings,
    UnknownSettingError,
    UnsupportedSettingError,
    check_environment,
    forwarded_variables,
    known_variables,
    refused_variables,
)

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("name", ["KINITRO_EXECUTOR_MAX_WORKERS", "KINITRO_EXECUTOR_MINERS_PER_WORKER"])
def test_an_optional_count_left_empty_means_its_default(monkeypatch, name):
    monkeypatch.setenv(name, "")  # deploy/.env.example leaves them empty; the launcher forwards ""
    settings = ExecutorSettings()
    assert settings.max_workers is None and settings.miners_per_worker is None


def test_optional_counts_parse_and_must_be_positive(monkeypatch):
    monkeypatch.setenv("KINITRO_EXECUTOR_MAX_WORKERS", "3")
    monkeypatch.setenv("KINITRO_EXECUTOR_MINERS_PER_WORKER", "2")
    settings = ExecutorSettings()
    assert (settings.max_workers, settings.miners_per_worker) == (3, 2)
    for bad in ("0", "-1", "two"):
        monkeypatch.setenv("KINITRO_EXECUTOR_MINERS_PER_WORKER", bad)
        with pytest.raises(ValidationError, match="miners_per_worker"):
            ExecutorSettings()


# --- unknown and refused variables -----------------------------------------------------------


def test_every_variable_of_the_operators_guide_is_known() -> None:
    guide = Path(__file__).resolve().parents[2] / "shared" / "backend-guide.md"
    if not guide.is_file():
        pytest.skip("the operator's guide is not beside this checkout")
    named = set(re.findall(r"`(KINITRO_[A-Z_]+)`", guide.read_text()))
    assert named and named <= set(known_variables()), sorted(named - set(known_variables()))


def test_a_misspelt_variable_names_the_nearest_valid_one() -> None:
    with pytest.raises(UnknownSettingError, match=r"KINITRO_EXECUTOR_ACTION_TIMOUT.*KINITRO_EXECUTOR_ACTION_TIMEOUT"):
        check_environment({"KINITRO_EXECUTOR_ACTION_TIMOUT": "1"})


@pytest.mark.parametrize(("name", "value", "hint"), [
    ("KINITRO_EXECUTOR_MINER_BASILICA_API_TOKEN", "tok", "KINITRO_EXECUTOR_EVAL_MODE=docker"),
    ("KINITRO_SCHEDULER_TASK_STALE_THRESHOLD_SECONDS", "300", "run_monitoring.start_timeout_seconds"),
    ("KINITRO_API_TASK_STALE_THRESHOLD_SECONDS", "120", "run_monitoring"),
    ("KINITRO_EXECUTOR_ENV_IDS", '["metaworld/reach-v3"]', "KINITRO_SCHEDULER_ENV_IDS"),
    ("KINITRO_EXECUTOR_EVAL_HOSTS", '["gpu-1", "gpu-2"]', "dagster-k8s"),
    ("KINITRO_EXECUTOR_MINER_DEPLOYMENT_ENABLED", "false", "deploys committed policies itself"),
])
def test_a_guide_setting_without_meaning_here_is_refused_with_what_to_use(name, value, hint) -> None:
    assert name in refused_variables()
    with pytest.raises(UnsupportedSettingError, match=rf"{name}.*{re.escape(hint)}"):
        check_environment({name: value})


@pytest.mark.parametrize(("name", "value"), [
    ("KINITRO_EXECUTOR_EVAL_HOSTS", '["localhost"]'),  # the guide's default: what runs here anyway
    ("KINITRO_EXECUTOR_MINER_DEPLOYMENT_ENABLED", "true"),
    ("KINITRO_EXECUTOR_MINER_DEPLOYMENT_GPU_COUNT", "0"),
    ("KINITRO_EXECUTOR_ENV_IDS", ""),
])
def test_the_guide_default_of_a_refused_setting_is_accepted(name, value) -> None:
    check_environment({name: value})


def test_basilica_eval_mode_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"basilica.*use docker"):
        ExecutorSettings(eval_mode="basilica")


def test_the_guides_memory_limit_name_is_an_alias(monkeypatch) -> None:
    monkeypatch.setenv("KINITRO_BACKEND_EVAL_MEM_LIMIT", "3g")
    assert ExecutorSettings().eval_mem_limit == "3g"


def test_run_containers_get_every_setting_that_is_set() -> None:
    environ = {"KINITRO_SCHEDULER_PARETO_TEMPERATURE": "2", "KINITRO_EXECUTOR_PRIVILEGED_STATE": "false",
               "DAGSTER_PG_HOST": "db", "KINITRO_TEST_POSTGRES_URL": "x", "HOME": "/root", "MUJOCO_GL": "egl"}
    assert forwarded_variables(environ) == ["DAGSTER_PG_HOST", "KINITRO_EXECUTOR_PRIVILEGED_STATE",
                                            "KINITRO_SCHEDULER_PARETO_TEMPERATURE", "MUJOCO_GL"]


def _start(command: list[str], **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KINITRO_") or k.startswith("KINITRO_TEST_")}
    return subprocess.run(command, env={**env, **extra}, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("service", ["code location", "kinitro api", "kinitro db status"])
def test_an_unknown_variable_stops_start_up_with_its_name(service, tmp_path) -> None:
    command = {
        "code location": [sys.executable, "-c", "import kinitro_dagster.definitions"],
        "kinitro api": [str(BIN / "kinitro"), "api", "--port", "1"],
        "kinitro db status": [str(BIN / "kinitro"), "db", "status"],
    }[service]
    result = _start(command, KINITRO_SCHEDULER_EPISODES_PER_ENVS="5", KINITRO_STATE_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "unknown setting KINITRO_SCHEDULER_EPISODES_PER_ENVS: did you mean KINITRO_SCHEDULER_EPISODES_PER_ENV?" \
        in result.stderr, result.stderr[-2000:]
    if service != "code location":
        assert "Traceback" not in result.stderr  # one line for the operator


@pytest.mark.parametrize("command", [["demo"], ["db", "status"], ["env", "list"]])
def test_a_value_that_does_not_parse_stops_every_command_with_one_line(command, tmp_path) -> None:
    result = _start([str(BIN / "kinitro"), *command], KINITRO_SCHEDULER_ENV_IDS="metaworld/reach-v3,metaworld/push-v3",
                    KINITRO_STATE_DIR=str(tmp_path))  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "KINITRO_SCHEDULER_ENV_IDS=metaworld/reach-v3,metaworld/push-v3: Input should be a valid list " \
           '(write a JSON list, e.g. ["metaworld/reach-v3","metaworld/push-v3"])' in result.stderr, result.stderr


def test_gpu_deployments_need_docker_mode() -> None:
    with pytest.raises(ValidationError, match=r"GPU_COUNT.*need KINITRO_EXECUTOR_EVAL_MODE=docker"):
        ExecutorSettings(miner_deployment_gpu_count=1)
    with pytest.raises(ValidationError, match=r"_MIN_GPU_MEMORY_GB is set but _GPU_COUNT is 0"):
        ExecutorSettings(eval_mode="docker", miner_deployment_min_gpu_memory_gb=16)
    settings = ExecutorSettings(eval_mode="docker", miner_deployment_gpu_count=2, miner_deployment_min_gpu_memory_gb=40)
    assert (settings.miner_deployment_gpu_count, settings.miner_deployment_min_gpu_memory_gb) == (2, 40.0)
