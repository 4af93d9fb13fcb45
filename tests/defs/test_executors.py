"""KINITRO_EXECUTOR_STEP_EXECUTOR picks how a run's steps execute; a docker step's container is
shaped as the run's own (image of its env family, forwarded settings, memory limit, mounts). Steps
in real containers on a real dockerd: tests/deploy/test_docker_production.py."""

from __future__ import annotations

from types import SimpleNamespace

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun
from dagster_docker.container_context import DockerContainerContext

from kinitro_dagster.defs.executors import KinitroDockerStepHandler, kinitro_docker_executor, step_executor
from kinitro_dagster.defs.run_launcher import KinitroDockerRunLauncher


def _step_context(tags: dict[str, str], launcher=None, image: str | None = "kinitro/evaluator:v1"):
    origin = SimpleNamespace(repository_origin=SimpleNamespace(container_image=image, container_context=None))
    run = DagsterRun(job_name="evaluate_env", run_id="0123456789abcdef", tags=tags)
    run = SimpleNamespace(tags=run.tags, job_code_origin=origin, run_id=run.run_id)
    return SimpleNamespace(dagster_run=run, instance=SimpleNamespace(run_launcher=launcher))


def test_each_name_selects_its_executor():
    assert step_executor("process") is dg.multiprocess_executor
    assert step_executor("docker") is kinitro_docker_executor
    with pytest.raises(dg.DagsterInvalidDefinitionError, match="use one of process, docker, k8s"):
        step_executor("celery")


def test_a_docker_step_starts_from_its_env_familys_image(monkeypatch):
    monkeypatch.setenv("KINITRO_EXECUTOR_EVAL_IMAGES", '{"genesis": "registry/genesis:3"}')
    handler = KinitroDockerStepHandler(None, DockerContainerContext())
    assert handler._get_image(_step_context({"kinitro/env_family": "genesis"})) == "registry/genesis:3"
    assert handler._get_image(_step_context({})) == "kinitro/evaluator:v1"
    with pytest.raises(dg.Failure, match="KINITRO_EXECUTOR_STEP_EXECUTOR=process"):
        handler._get_image(_step_context({}, image=None))  # no run launcher's image, none of its own


def test_a_docker_step_container_is_shaped_as_the_run_container(monkeypatch):
    monkeypatch.setenv("KINITRO_EXECUTOR_ACTION_TIMEOUT", "0.9")
    monkeypatch.setenv("KINITRO_EXECUTOR_EVAL_MEM_LIMIT", "3g")
    launcher = KinitroDockerRunLauncher(image="kinitro/evaluator:v1", network="kinitro",
                                        container_kwargs={"volumes": ["/var/lib/kinitro:/var/lib/kinitro"]})
    # The executor's own config is merged over the run container's.
    handler = KinitroDockerStepHandler(None, DockerContainerContext(container_kwargs={"cpu_count": 2}))
    context = handler._get_docker_container_context(_step_context({}, launcher))
    assert "KINITRO_EXECUTOR_ACTION_TIMEOUT" in context.env_vars
    assert context.networks == ["kinitro"]
    assert context.container_kwargs["mem_limit"] == "3g"
    assert context.container_kwargs["volumes"] == ["/var/lib/kinitro:/var/lib/kinitro"]
    assert context.container_kwargs["cpu_count"] == 2
