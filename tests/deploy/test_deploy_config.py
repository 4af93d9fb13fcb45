"""deploy/ is consistent: the instance file passes Dagster's own schemas, every variable it reads is
set by .env.example and every KINITRO_* variable there is a known setting, run containers can run
docker eval mode, and the compose
stack wires what the instance expects (and passes `docker-compose config`). Fast (no containers,
no database); the full stack runs in test_docker_production.py."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture
def env_example() -> dict[str, str]:
    lines = (DEPLOY / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_instance_config_passes_dagster_schemas(env_example, monkeypatch):
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config

    from kinitro_dagster.defs.run_coordinator import EnvFamilyRunCoordinator
    from kinitro_dagster.defs.run_launcher import KinitroDockerRunLauncher

    for key, value in env_example.items():
        monkeypatch.setenv(key, value)
    config, _ = dagster_instance_config(str(DEPLOY))
    # The instance schema covers storage (postgres_db); each class checks its own config section.
    for cls, section in ((KinitroDockerRunLauncher, "run_launcher"), (EnvFamilyRunCoordinator, "run_coordinator")):
        assert getattr(importlib.import_module(config[section]["module"]), config[section]["class"]) is cls
        result = process_config(cls.config_type(), config[section]["config"])
        assert result.success, (cls.__name__, result.errors)
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert config["run_monitoring"]["enabled"] and config["run_retries"]["enabled"]
    assert config["run_retries"]["max_retries"] >= 1


def test_instance_variables_are_set_and_settings_known(env_example):
    from kinitro_dagster.settings import check_environment

    referenced = set(re.findall(r"\{env: (\w+)\}", (DEPLOY / "dagster.yaml").read_text()))
    assert referenced <= set(env_example)
    # Every service refuses to start on an unknown KINITRO_* variable: .env.example must not have one.
    check_environment(env_example)
    # No hand-kept list of forwarded variables: the launcher forwards every KINITRO_* setting.
    assert "env_vars" not in yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["run_launcher"]["config"]


def _mounts(volumes: list[str]) -> dict[str, str]:
    """{host path: container path} of short-syntax bind mounts."""
    return dict(v.split(":")[:2] for v in volumes if isinstance(v, str) and v.startswith("/"))


def test_run_containers_can_start_policy_containers_on_the_host(env_example):
    """Docker eval mode from a run container: it asks the host's engine to mount a snapshot and a
    socket directory by the paths it sees, so those must be host paths mounted at the same place."""
    from kinitro_dagster.miners.host import SHARED_RUN_ROOT

    launcher = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["run_launcher"]["config"]
    mounts = _mounts(launcher["container_kwargs"]["volumes"])
    state = env_example["KINITRO_STATE_DIR"]
    assert mounts.get(state) == state  # the hub cache the snapshots come from
    assert mounts.get("/var/run/docker.sock") == "/var/run/docker.sock"  # the host's engine
    assert mounts.get(str(SHARED_RUN_ROOT)) == str(SHARED_RUN_ROOT)  # default_run_root(): the socket dirs


def test_compose_stack_matches_the_instance(env_example):
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "code", "webserver", "daemon", "api"} <= set(services)
    assert "healthcheck" in services["postgres"]
    # Run containers join the network, and see the state dir where the services do: the same bind.
    assert compose["networks"]["kinitro"]["name"] == env_example["KINITRO_RUN_NETWORK"]
    state = env_example["KINITRO_STATE_DIR"]
    for name in ("code", "webserver", "daemon", "api"):
        assert _mounts(services[name]["volumes"]).get(state) == state, name
    assert "/var/run/docker.sock:/var/run/docker.sock" in services["daemon"]["volumes"]
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())["load_from"][0]["grpc_server"]
    assert workspace["host"] in services and str(workspace["port"]) in services["code"]["command"]


def test_compose_file_passes_docker_compose_config(tmp_path):
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed: sim_images/setup-docker.sh installs Debian's (CI runs it)")
    deploy = shutil.copytree(DEPLOY, tmp_path / "deploy")
    shutil.copy(deploy / ".env.example", deploy / ".env")  # as the README's setup does; services read it
    result = subprocess.run(
        [compose, "-f", str(deploy / "docker-compose.yml"), "--env-file", str(deploy / ".env"), "config", "-q"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, f"{compose} config rejected deploy/docker-compose.yml:\n{result.stderr}"
