"""The docker engine this evaluator talks to: one client per process, and the checks that make
"docker mode cannot run here" an operator's error (DockerSetupError) rather than a miner's."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import docker

logger = logging.getLogger(__name__)

class DockerSetupError(RuntimeError):
    """Docker mode cannot run at all here (no daemon, no image): the evaluator's problem, not a miner's."""


_clients: dict[int, docker.DockerClient] = {}


def docker_client() -> docker.DockerClient:
    """A client for the docker daemon (DOCKER_HOST or the default socket), one per process."""
    pid = os.getpid()
    if pid not in _clients:
        import docker

        try:
            client = docker.from_env(timeout=60)
            client.ping()
        except docker.errors.DockerException as error:
            raise DockerSetupError(
                f"docker mode needs a running docker daemon and none answered ({error}); start dockerd "
                "(`.ci/run` does) or set DOCKER_HOST, or use KINITRO_EXECUTOR_EVAL_MODE=local"
            ) from error
        _clients[pid] = client
    return _clients[pid]


def require_image(image: str) -> None:
    """Raise DockerSetupError unless `image` is on the docker host."""
    from docker.errors import ImageNotFound

    try:
        docker_client().images.get(image)
    except ImageNotFound:
        raise DockerSetupError(missing_image_message(image)) from None


def missing_image_message(image: str) -> str:
    return (
        f"image {image} is not on this docker host: build it with `kinitro env build miner --tag {image}` "
        "(or point KINITRO_EXECUTOR_MINER_DEPLOYMENT_IMAGE at one that is)"
    )
