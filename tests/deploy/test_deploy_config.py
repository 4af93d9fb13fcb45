"""deploy/ is consistent: the instance file passes Dagster's own schemas, every variable it forwards
to run containers is set by .env.example, and the compose stack wires what the instance expects.
Fast (no docker, no database); the full stack runs in test_docker_production.py."""

from __future__ import annotations

import re
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
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_docker import DockerRunLauncher

    for key, value in env_example.items():
        monkeypatch.setenv(key, value)
    config, _ = dagster_instance_config(str(DEPLOY))
    # The instance schema covers storage (postgres_db); each class checks its own config section.
    for cls, section in ((DockerRunLauncher, "run_launcher"), (QueuedRunCoordinator, "run_coordinator")):
        result = process_config(cls.config_type(), config[section]["config"])
        assert result.success, (cls.__name__, result.errors)
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert config["run_monitoring"]["enabled"] and config["run_retries"]["enabled"]
    assert config["run_retries"]["max_retries"] >= 1


def test_forwarded_variables_are_all_set_by_env_example(env_example):
    launcher = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["run_launcher"]["config"]
    # The launcher raises at launch time for a listed variable the daemon does not have.
    assert set(launcher["env_vars"]) <= set(env_example)
    referenced = set(re.findall(r"\{env: (\w+)\}", (DEPLOY / "dagster.yaml").read_text()))
    assert referenced <= set(env_example)


def test_compose_stack_matches_the_instance(env_example):
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "code", "webserver", "daemon", "api"} <= set(services)
    assert "healthcheck" in services["postgres"]
    # Run containers join the network and mount the volume that dagster.yaml names.
    assert compose["networks"]["kinitro"]["name"] == env_example["KINITRO_RUN_NETWORK"]
    launcher = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["run_launcher"]["config"]
    volume = launcher["container_kwargs"]["volumes"][0].split(":")[0]
    assert compose["volumes"][volume]["name"] == volume
    assert "/var/run/docker.sock:/var/run/docker.sock" in services["daemon"]["volumes"]
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())["load_from"][0]["grpc_server"]
    assert workspace["host"] in services and str(workspace["port"]) in services["code"]["command"]
