"""Fixtures of the miners tests: a real dockerd with the miner-runner image (docker mode), and the
fuzz modules' figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kinitro_dagster.miners.host import LABEL, owner_id

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("KINITRO_EXECUTOR_MINER_DEPLOYMENT_IMAGE", "kinitro/miner-runner:v1")


def _docker_ready(image: str) -> bool:
    try:
        subprocess.run(["docker", "image", "inspect", image], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


@pytest.fixture(scope="session")
def docker_image() -> Iterator[str]:
    """A running dockerd with the miner-runner image; made by sim_images/setup-docker.sh if missing."""
    if not _docker_ready(IMAGE):
        setup = subprocess.run([str(REPO / "sim_images" / "setup-docker.sh")], capture_output=True, text=True,
                               env={**os.environ, "KINITRO": str(Path(sys.executable).parent / "kinitro")},
                               timeout=1200)  # fmt: skip
        if setup.returncode != 0 or not _docker_ready(IMAGE):
            pytest.fail(
                f"docker mode tests need dockerd and {IMAGE}; sim_images/setup-docker.sh (needs root) failed:\n"
                f"{setup.stdout[-2000:]}\n{setup.stderr[-3000:]}\nFix that, or deselect with -m 'not docker'.",
                pytrace=False,
            )
    yield IMAGE
    leftovers = our_containers()
    assert not leftovers, f"policy containers outlived the tests: {leftovers}"


def our_containers() -> list[str]:
    """Policy containers started by this test process (other sessions on the machine have their own)."""
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={LABEL}=1", "--filter", f"label=kinitro.owner={owner_id()}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.split()


@pytest.fixture(scope="module", autouse=True)
def _report_fuzz_figures(request: pytest.FixtureRequest) -> Iterator[None]:
    """A fuzz module keeps `FIGURES` (test name -> its counts, a dataclass); with KINITRO_FUZZ_FIGURES
    set to a file path, they are appended to it as JSON lines when the module ends."""
    yield
    figures = getattr(request.module, "FIGURES", None)
    path = os.environ.get("KINITRO_FUZZ_FIGURES")
    if path and figures:
        with open(path, "a") as out:
            for name, counts in figures.items():
                out.write(json.dumps({"test": name, **vars(counts)}) + "\n")
    if figures:
        figures.clear()
