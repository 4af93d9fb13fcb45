"""The genesis image (`kinitro env build genesis`): an episode starts in it with no network, nothing to
download and nothing to compile (Genesis's kernels and the G1 model were made while building).

Needs dockerd (sim_images/setup-docker.sh; CI's .ci/run also builds the image first, so its cold build,
~10 min with torch's wheels, stays outside this test's timeout). FAILS rather than skips without them.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
IMAGE = "kinitro/genesis:it"

PROBE = r"""
import json, os, pathlib
cache = pathlib.Path.home() / ".cache" / "quadrants"
def files():
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())
before = files()
from kinitro_dagster.sim import g1_model, genesis_g1
timing = genesis_g1.warm_up()
print(json.dumps({"before": len(before), "new": sorted(set(files()) - set(before)), **timing,
                  "model": str(g1_model.model_path()), "assets": os.environ["KINITRO_G1_ASSETS_DIR"]}))
"""


@pytest.fixture(scope="module")
def genesis_image() -> str:
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("dockerd is not running: run sim_images/setup-docker.sh as root (CI's .ci/run does)", pytrace=False)
    started = time.monotonic()
    env = {**os.environ, "APP_DIR": str(REPO), "DOCKERFILE_DIR": str(REPO / "sim_images" / "genesis"),
           "UV_EXPORT_EXTRAS": "genesis"}  # fmt: skip
    build = subprocess.run([str(REPO / "sim_images" / "evaluator" / "build.sh"), IMAGE], env=env,
                           capture_output=True, text=True, timeout=1500)  # fmt: skip
    if build.returncode != 0:
        pytest.fail(f"building {IMAGE} failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}", pytrace=False)
    print(f"\n{IMAGE} built in {time.monotonic() - started:.0f} s")
    return IMAGE


def test_an_episode_starts_offline_from_what_the_image_compiled(genesis_image: str) -> None:
    run = subprocess.run(["docker", "run", "--rm", "--network", "none", genesis_image, "python", "-c", PROBE],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"\nin the image: Genesis started in {seen['start_s']:.1f} s, first episode step in "
          f"{seen['first_episode_s']:.1f} s, {seen['before']} cached kernel files")
    assert seen["before"] > 0 and seen["new"] == [], seen["new"][:10]  # every kernel came from the image
    assert seen["model"].startswith(seen["assets"])
