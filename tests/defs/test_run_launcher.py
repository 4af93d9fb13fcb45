"""deploy/dagster.yaml's run launcher and coordinator apply the settings of the daemon's
environment: every KINITRO_* setting is forwarded to run containers (no list to keep), episode
runs get their family's image, containers the memory limit, runs the queue's tags and limits.
The launch itself, on a real dockerd, is tests/deploy/test_docker_production.py."""

from __future__ import annotations

import pytest
from dagster._core.storage.dagster_run import DagsterRun

from kinitro_dagster.defs.run_coordinator import EXECUTOR_ID_TAG, EnvFamilyRunCoordinator, settings_tags
from kinitro_dagster.defs.run_launcher import KinitroDockerRunLauncher, run_image
from kinitro_dagster.settings import ExecutorSettings, SchedulerSettings


def _run(tags: dict[str, str] | None = None) -> DagsterRun:
    return DagsterRun(job_name="evaluate_env", run_id="0123456789abcdef", tags=tags or {})


def test_every_kinitro_setting_the_daemon_has_is_forwarded(monkeypatch) -> None:
    # A setting no list in deploy/ names: it reaches the run container all the same.
    monkeypatch.setenv("KINITRO_SCHEDULER_PARETO_TEMPERATURE", "3.5")
    monkeypatch.setenv("KINITRO_EXECUTOR_ACTION_TIMEOUT", "0.9")
    monkeypatch.setenv("DAGSTER_PG_HOST", "db")
    launcher = KinitroDockerRunLauncher(image="kinitro/evaluator:v1", env_vars=["DAGSTER_PG_HOST"])
    env_vars = launcher.get_container_context(_run()).env_vars
    forwarded = {"KINITRO_SCHEDULER_PARETO_TEMPERATURE", "KINITRO_EXECUTOR_ACTION_TIMEOUT", "DAGSTER_PG_HOST"}
    assert forwarded <= set(env_vars)
    assert env_vars.count("DAGSTER_PG_HOST") == 1


def test_the_memory_limit_applies_unless_the_config_sets_one(monkeypatch) -> None:
    monkeypatch.setenv("KINITRO_BACKEND_EVAL_MEM_LIMIT", "3g")  # the guide's name
    assert KinitroDockerRunLauncher(image="x:1").get_container_context(_run()).container_kwargs["mem_limit"] == "3g"
    explicit = KinitroDockerRunLauncher(image="x:1", container_kwargs={"mem_limit": "1g"})
    assert explicit.get_container_context(_run()).container_kwargs["mem_limit"] == "1g"


def test_episode_runs_start_from_their_familys_image() -> None:
    images = {"metaworld": "registry/metaworld:2"}
    assert run_image("kinitro/evaluator:v1", {"kinitro/env_family": "metaworld"}, images) == "registry/metaworld:2"
    # A family without an operator's image starts from its registry entry's, or the launcher's.
    assert run_image("kinitro/evaluator:v1", {"kinitro/env_family": "genesis"}, images) == "kinitro/genesis:v1"
    assert run_image("kinitro/evaluator:v1", {"kinitro/env_family": "procthor"}, images) == "kinitro/evaluator:v1"
    assert run_image("kinitro/evaluator:v1", {}, images) == "kinitro/evaluator:v1"


def test_a_misspelt_setting_stops_the_launcher(monkeypatch) -> None:
    monkeypatch.setenv("KINITRO_EXECUTOR_EVAL_IMAGE", "{}")
    with pytest.raises(ValueError, match="did you mean KINITRO_EXECUTOR_EVAL_IMAGES"):
        KinitroDockerRunLauncher(image="x:1")


def test_queue_settings_override_the_coordinators_config(monkeypatch) -> None:
    monkeypatch.setenv("KINITRO_EXECUTOR_BATCH_SIZE", "3")
    monkeypatch.setenv("KINITRO_EXECUTOR_POLL_INTERVAL_SECONDS", "7")
    coordinator = EnvFamilyRunCoordinator(max_concurrent_runs=8, dequeue_interval_seconds=5)
    assert coordinator.get_run_queue_config().max_concurrent_runs == 3
    assert coordinator.dequeue_interval_seconds == 7
    monkeypatch.delenv("KINITRO_EXECUTOR_BATCH_SIZE")
    assert EnvFamilyRunCoordinator(max_concurrent_runs=8).get_run_queue_config().max_concurrent_runs == 8


def test_every_run_gets_the_cycle_timeout_as_max_runtime_and_the_executor_id() -> None:
    scheduler = SchedulerSettings(cycle_timeout_seconds=5400)
    tags = settings_tags({}, ExecutorSettings(executor_id="exec-a"), scheduler)
    assert tags == {"dagster/max_runtime": "5400", EXECUTOR_ID_TAG: "exec-a"}
    # A run launched with its own max runtime keeps it; no executor id, no tag.
    assert settings_tags({"dagster/max_runtime": "60"}, ExecutorSettings(), scheduler) == {}


def test_the_embedded_instance_queues_through_the_same_coordinator(tmp_path, monkeypatch) -> None:
    import shutil

    import dagster as dg

    from kinitro_dagster.demo import DAGSTER_YAML

    shutil.copy(DAGSTER_YAML, tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.run_coordinator, EnvFamilyRunCoordinator)
        assert instance.run_coordinator.get_run_queue_config().max_concurrent_runs == 2
    monkeypatch.setenv("KINITRO_EXECUTOR_BATCH_SIZE", "1")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.run_coordinator.get_run_queue_config().max_concurrent_runs == 1


def test_run_containers_get_gpus_for_rendering_when_asked(monkeypatch) -> None:
    assert "device_requests" not in KinitroDockerRunLauncher(image="x:1").get_container_context(_run()).container_kwargs
    monkeypatch.setenv("KINITRO_EXECUTOR_EVAL_GPU_COUNT", "2")
    (request,) = KinitroDockerRunLauncher(image="x:1").get_container_context(_run()).container_kwargs["device_requests"]
    assert request == {"count": 2, "capabilities": [["gpu", "graphics", "compute", "utility"]]}
    # docker-py turns it into the engine's DeviceRequest (what `docker run --gpus 2` sends).
    from docker.types import HostConfig

    host_config = HostConfig(version="1.41", device_requests=[request])
    assert host_config["DeviceRequests"][0]["Count"] == 2
    assert "graphics" in host_config["DeviceRequests"][0]["Capabilities"][0]
