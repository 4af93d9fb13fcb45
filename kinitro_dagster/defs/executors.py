"""How the steps of a run execute: KINITRO_EXECUTOR_STEP_EXECUTOR.

- `process` (default): each step is a process of the run's container (Dagster's multiprocess
  executor).
- `docker`: each step is a container of its own on the Docker engine the run container talks to
  (dagster-docker's step-delegating executor), so the shards of one episode partition
  (`play_shard`, KINITRO_EXECUTOR_MINERS_PER_SHARD) run side by side as containers. A step
  container is what the production run launcher would start for the run: the image of the run's
  env family, every forwarded setting, the memory limit, GPUs and mounts
  (`KinitroDockerRunLauncher.get_container_context`), merged with the executor's own config.
- `k8s`: each step is a pod (dagster-k8s's `k8s_job_executor`, with its `K8sRunLauncher`:
  deploy/helm/values.yaml). Needs the `k8s` extra.

Steps hand their outputs over through the IO manager on the state dir
(`resources.step_output_manager`), which every run and step container mounts at the same path.
"""

from __future__ import annotations

from typing import Any, get_args

import dagster as dg
from dagster._core.definitions.executor_definition import multiple_process_executor_requirements
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.step_delegating import StepDelegatingExecutor
from dagster._core.executor.step_delegating.step_handler.base import StepHandlerContext
from dagster_docker.container_context import DockerContainerContext
from dagster_docker.docker_executor import DockerStepHandler, docker_executor

from kinitro_dagster.settings import ExecutorSettings

STEP_EXECUTORS: tuple[str, ...] = get_args(ExecutorSettings.model_fields["step_executor"].annotation)


class KinitroDockerStepHandler(DockerStepHandler):
    """dagster-docker's step handler, with each step container shaped as the run's own container."""

    def _get_image(self, step_handler_context: StepHandlerContext) -> str:
        from kinitro_dagster.defs.run_launcher import run_image

        try:
            default = super()._get_image(step_handler_context)
        except Exception as exc:  # dagster-docker raises a bare Exception when no image is known
            raise dg.Failure(
                "KINITRO_EXECUTOR_STEP_EXECUTOR=docker starts each step from the run's image, and this run has "
                "none: run it through deploy/dagster.yaml's KinitroDockerRunLauncher (KINITRO_EVALUATOR_IMAGE), "
                "or use KINITRO_EXECUTOR_STEP_EXECUTOR=process"
            ) from exc
        return run_image(default, dict(step_handler_context.dagster_run.tags), ExecutorSettings().eval_images)

    def _get_docker_container_context(self, step_handler_context: StepHandlerContext) -> DockerContainerContext:
        from kinitro_dagster.defs.run_launcher import KinitroDockerRunLauncher

        launcher = step_handler_context.instance.run_launcher
        if not isinstance(launcher, KinitroDockerRunLauncher):
            return super()._get_docker_container_context(step_handler_context)
        return launcher.get_container_context(step_handler_context.dagster_run).merge(self._container_context)


@dg.executor(name="docker", config_schema=docker_executor.config_schema,
             requirements=multiple_process_executor_requirements())  # fmt: skip
def kinitro_docker_executor(init_context: dg.InitExecutorContext) -> StepDelegatingExecutor:
    """dagster-docker's `docker_executor` (the same config), with `KinitroDockerStepHandler`."""
    config: dict[str, Any] = init_context.executor_config
    networks = config.get("networks") or ([config["network"]] if config.get("network") else [])
    context = DockerContainerContext(registry=config.get("registry"), env_vars=config.get("env_vars") or [],
                                     networks=networks, container_kwargs=config.get("container_kwargs"))
    return StepDelegatingExecutor(
        KinitroDockerStepHandler(config.get("image"), context),
        retries=RetryMode.from_config(config["retries"]) or RetryMode.DISABLED,
        max_concurrent=config.get("max_concurrent"),
        tag_concurrency_limits=config.get("tag_concurrency_limits"),
    )


def step_executor(name: str) -> dg.ExecutorDefinition:
    """The executor KINITRO_EXECUTOR_STEP_EXECUTOR names."""
    if name == "process":
        return dg.multiprocess_executor
    if name == "docker":
        return kinitro_docker_executor
    if name == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError as exc:
            raise dg.DagsterInvalidDefinitionError(
                "KINITRO_EXECUTOR_STEP_EXECUTOR=k8s needs dagster-k8s: install the k8s extra "
                "(uv sync --extra k8s, or pip install 'kinitro-dagster[k8s]'), or use process or docker"
            ) from exc
        return k8s_job_executor
    raise dg.DagsterInvalidDefinitionError(
        f"KINITRO_EXECUTOR_STEP_EXECUTOR={name!r} is unknown: use one of {', '.join(STEP_EXECUTORS)}"
    )

