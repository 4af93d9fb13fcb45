"""The production run launcher: dagster-docker's DockerRunLauncher, with the configuration
forwarded by construction and the run container shaped by the executor settings.

Not part of the code location's Definitions: deploy/dagster.yaml names this class as the
instance's run launcher, so the daemon and the webserver load it (the evaluator image has it).

- Environment: every `KINITRO_*` setting the launching process has (and the storage, hub and
  renderer variables: `settings.forwarded_variables`) is passed to the run container, beside any
  `env_vars` the config lists. A setting the operator adds later needs no edit here: there is no
  hand-kept list to forget it in.
- Image: `KINITRO_EXECUTOR_EVAL_IMAGES` (`{"family": "image"}`) picks the image of each episode
  run from its `kinitro/env_family` tag (set by EnvFamilyRunCoordinator when it was queued), else
  the family's registry entry (`EnvFamily.image`); other runs, and families with neither, use the
  config's `image`.
- Memory: `KINITRO_EXECUTOR_EVAL_MEM_LIMIT` (the guide's `KINITRO_BACKEND_EVAL_MEM_LIMIT`) is the
  run container's memory limit, unless container_kwargs set `mem_limit` themselves.
- GPUs: `KINITRO_EXECUTOR_EVAL_GPU_COUNT` NVIDIA GPUs per run container, for rendering
  (`rendering_gpus`), unless container_kwargs set `device_requests` themselves.
"""

from __future__ import annotations

from typing import Any

from dagster._core.storage.dagster_run import DagsterRun
from dagster_docker import DockerRunLauncher
from dagster_docker.container_context import DockerContainerContext

from kinitro_dagster.defs.run_coordinator import ENV_FAMILY_TAG
from kinitro_dagster.settings import ExecutorSettings, check_environment, forwarded_variables
from kinitro_dagster.sim.registry import families


def run_image(default_image: str, run_tags: dict[str, str], eval_images: dict[str, str]) -> str:
    """The image a run's container starts from: its env family's (the operator's, else the
    registry's), else the default."""
    family = run_tags.get(ENV_FAMILY_TAG)
    if not family:
        return default_image
    registered = families().get(family)
    return eval_images.get(family) or (registered.image if registered else None) or default_image


def rendering_gpus(count: int) -> dict[str, Any]:
    """`docker run --gpus N` with the graphics capability: the NVIDIA runtime then mounts the
    driver's EGL library and vendor file, so glvnd's libEGL (in the image) finds the GPU."""
    return {"count": count, "capabilities": [["gpu", "graphics", "compute", "utility"]]}


class KinitroDockerRunLauncher(DockerRunLauncher):
    """DockerRunLauncher (same config) that forwards every KINITRO_* setting, picks the image per
    env family and limits the run container's memory (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_environment()  # the daemon refuses to start on a misspelt setting, as every service does
        self._settings = ExecutorSettings()

    def get_container_context(self, dagster_run: DagsterRun) -> DockerContainerContext:
        context = super().get_container_context(dagster_run)
        kwargs: dict[str, Any] = {}
        if self._settings.eval_mem_limit and "mem_limit" not in context.container_kwargs:
            kwargs["mem_limit"] = self._settings.eval_mem_limit
        if self._settings.eval_gpu_count and "device_requests" not in context.container_kwargs:
            kwargs["device_requests"] = [rendering_gpus(self._settings.eval_gpu_count)]
        listed = set(context.env_vars)
        extra = [name for name in forwarded_variables() if name not in listed]
        return context.merge(DockerContainerContext(env_vars=extra, container_kwargs=kwargs))

    def _launch_container_with_command(self, run: DagsterRun, docker_image: str, command: Any) -> None:
        image = run_image(docker_image, dict(run.tags), self._settings.eval_images)
        super()._launch_container_with_command(run, image, command)
