"""The miner-runner image: what every policy container starts from (sim_images/miner-runner)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from kinitro_dagster.miners.deployments import (
    KINITRO_COMPAT_DIR,
)
from kinitro_dagster.miners.docker_deployment import DEFAULT_IMAGE
from kinitro_dagster.miners.docker_engine import DockerSetupError, docker_client

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

RUNNER_DOCKERFILE_DIR = Path(__file__).resolve().parents[2] / "sim_images" / "miner-runner"
LOCAL_BASE_IMAGE = "kinitro/base:trixie"  # sim_images/base/build-base.sh: for machines without a registry
PUBLIC_BASE_IMAGE = "python:3.12-slim"
_CA_BUNDLE_CANDIDATES = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
RUNNER_COMPAT_CONTEXT_DIR = "kinitro-compat"  # KINITRO_COMPAT_DIR's copy in the build context


def build_runner_image(
    tag: str = DEFAULT_IMAGE,
    *,
    base_image: str | None = None,
    with_metaworld: bool = True,
    ca_bundle: Path | None = None,
    echo: Callable[[str], None] = print,
) -> str:
    """Build the miner-runner image (`sim_images/miner-runner`); returns its id.

    `base_image` None: the local `kinitro/base:trixie` when this docker host has it (no registry
    needed), else `python:3.12-slim`. The machine's CA bundle (`ca_bundle`, else PIP_CERT /
    REQUESTS_CA_BUNDLE / SSL_CERT_FILE / the Debian default) goes into the build context so pip can
    reach PyPI through a TLS-intercepting proxy; the build uses the host's network. The `kinitro`
    compatibility package (KINITRO_COMPAT_DIR) goes in as `kinitro-compat/`.
    """
    from docker.errors import APIError, BuildError, ImageNotFound

    client = docker_client()
    if base_image is None:
        try:
            client.images.get(LOCAL_BASE_IMAGE)
            base_image = LOCAL_BASE_IMAGE
        except ImageNotFound:
            base_image = PUBLIC_BASE_IMAGE
    if not (RUNNER_DOCKERFILE_DIR / "Dockerfile").is_file():
        raise DockerSetupError(f"no Dockerfile at {RUNNER_DOCKERFILE_DIR}: build from a checkout of this repository")
    echo(f"building {tag} from {base_image} (MetaWorld + MuJoCo: {'yes' if with_metaworld else 'no'})")
    with tempfile.TemporaryDirectory(prefix="kinitro-build-") as context:
        shutil.copytree(RUNNER_DOCKERFILE_DIR, context, dirs_exist_ok=True)
        # The `kinitro` compatibility package (the Dockerfile puts it on PYTHONPATH).
        shutil.copytree(KINITRO_COMPAT_DIR, Path(context) / RUNNER_COMPAT_CONTEXT_DIR,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
        bundle = ca_bundle or machine_ca_bundle()
        if bundle is not None:
            shutil.copyfile(bundle, Path(context) / "pip-ca.crt")
        build_args = {"BASE_IMAGE": base_image, "WITH_METAWORLD": "1" if with_metaworld else "0"}
        image_id = None
        try:
            stream = client.api.build(path=context, tag=tag, buildargs=build_args, network_mode="host", rm=True,
                                      forcerm=True, decode=True)  # fmt: skip
            for chunk in stream:
                if "error" in chunk:
                    raise DockerSetupError(f"building {tag} failed: {chunk['error'].strip()}")
                if text := chunk.get("stream", "").rstrip():
                    echo(text)
                image_id = chunk.get("aux", {}).get("ID", image_id)
        except (APIError, BuildError) as error:
            raise DockerSetupError(f"building {tag} failed: {error}") from error
    if image_id is None:
        image_id = client.images.get(tag).id
    return image_id


def machine_ca_bundle() -> Path | None:
    for var in _CA_BUNDLE_CANDIDATES:
        if (value := os.environ.get(var)) and Path(value).is_file():
            return Path(value)
    default = Path("/etc/ssl/certs/ca-certificates.crt")
    return default if default.is_file() else None
