"""Kinitro's miner template, exactly as `kinitro miner init` lays it out, runs here unchanged.

The template's `rl_interface.py` does `from kinitro.types import EncodedImage`, and the template
does not ship `kinitro/`. Policy runtimes provide a small compatible `kinitro` package
(kinitro_dagster/miners/compat): local mode puts it on the server's PYTHONPATH, the miner-runner
image carries it at /opt/kinitro-compat. The fixture (tests/fixtures/policies/kinitro_template)
imports only fastapi, uvicorn, pydantic, numpy and `kinitro.types` at module level; its
requirements.txt (torch, Pillow, ...) is kept as the template writes it and is not installed here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kinitro_dagster.miners import deployments
from kinitro_dagster.miners.deployments import KINITRO_COMPAT_DIR, DeploymentError, LocalDeployment
from kinitro_dagster.miners.policy_client import PolicyClient
from kinitro_dagster.protocol import OBSERVATION_KEYS, parse_action
from kinitro_dagster.sim.base import EnvConfig
from kinitro_dagster.sim.episode import run_episode
from kinitro_dagster.sim.metaworld import MetaWorldEnv

os.environ.setdefault("MUJOCO_GL", "egl")

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "tests" / "fixtures" / "policies" / "kinitro_template"
ENV_ID = "metaworld/reach-v3"
CAMERAS = EnvConfig(use_images=True, max_steps=5)  # the template gets both corner cameras
# What `kinitro miner init` writes: the template directory's files plus kinitro/rl_interface.py.
TEMPLATE_FILES = {"Dockerfile", "env.py", "policy.py", "requirements.txt", "rl_interface.py", "server.py"}


@pytest.fixture(scope="module")
def env() -> Iterator[MetaWorldEnv]:
    environment = MetaWorldEnv(ENV_ID, CAMERAS)
    yield environment
    environment.close()


def test_fixture_is_laid_out_as_kinitro_miner_init_writes_it():
    files = {p.name for p in TEMPLATE.iterdir() if p.name != "__pycache__"}
    assert files == TEMPLATE_FILES  # no kinitro/ beside it: that is the problem being solved
    assert "from kinitro.types import EncodedImage" in (TEMPLATE / "rl_interface.py").read_text()


def test_template_serves_and_plays_a_metaworld_episode_with_cameras_in_local_mode(env):
    with LocalDeployment(TEMPLATE, warmup_timeout=30) as deployment, PolicyClient(deployment.base_url) as client:
        health = client.health()
        record = run_episode(env, client, uid=3, episode=0, seed=17)
    assert health["status"] == "healthy" and health["model_loaded"] is True
    assert (record.error_kind, record.error) == (None, None)
    assert record.steps == CAMERAS.max_steps  # a random policy does not reach the goal in 5 steps
    assert np.isfinite(record.total_reward)


def test_template_without_the_compat_package_fails_to_import_kinitro(tmp_path, monkeypatch):
    monkeypatch.setattr(deployments, "KINITRO_COMPAT_DIR", tmp_path / "no-compat-here")
    with pytest.raises(DeploymentError, match=r"No module named 'kinitro'"):
        LocalDeployment(TEMPLATE, warmup_timeout=30).start()


def test_miner_that_ships_its_own_kinitro_package_keeps_it(tmp_path):
    policy = tmp_path / "policy"
    shutil.copytree(TEMPLATE, policy, ignore=shutil.ignore_patterns("__pycache__"))
    (policy / "kinitro").mkdir()
    (policy / "kinitro" / "__init__.py").write_text("")
    (policy / "kinitro" / "types.py").write_text("raise ImportError('the miner s own kinitro package was imported')\n")
    with pytest.raises(DeploymentError, match="the miner s own kinitro package was imported"):
        LocalDeployment(policy, warmup_timeout=30).start()


def test_evaluator_process_cannot_import_the_compat_package_as_kinitro():
    assert importlib.util.find_spec("kinitro") is None
    assert not (KINITRO_COMPAT_DIR / "__init__.py").exists()  # not a subpackage of kinitro_dagster.miners


_VALIDATE = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    from pydantic import ValidationError
    from kinitro.rl_interface import Action, ActionKeys, Observation, ProprioKeys, decode_image, encode_image
    from kinitro.types import EncodedImage

    payload = json.load(sys.stdin)
    obs = Observation.model_validate(payload)
    frames = obs.images
    try:
        Observation.model_validate({**payload, "goal": [0, 0, 0]})
        refused = False
    except ValidationError:
        refused = True
    frame = frames["corner"]
    again = decode_image(encode_image(frame))
    action = Action.from_array(np.linspace(-1, 1, 7), {ActionKeys.EE_TWIST: 6, ActionKeys.GRIPPER: 1})
    print(json.dumps({
        "round_trip": obs.model_dump(mode="json") == payload,
        "frames": {name: [list(f.shape), str(f.dtype)] for name, f in frames.items()},
        "image_round_trip": bool((again == frame).all()),
        "proprio_dim": len(obs.proprio_array()),
        "ee_quat": obs.get_proprio(ProprioKeys.EE_QUAT).tolist(),
        "extra_key_refused": refused,
        "encoded_image_keys": sorted(EncodedImage.__annotations__),
        "action": json.loads(Action.model_validate_json(action.model_dump_json()).model_dump_json()),
    }))
    """
)


def test_compat_types_accept_the_evaluators_observation_and_round_trip_an_action(env):
    observation = env.reset(seed=5)
    assert tuple(observation) == OBSERVATION_KEYS
    payload = json.loads(json.dumps(observation))  # exactly what /act carries
    result = subprocess.run(
        [sys.executable, "-c", _VALIDATE, str(KINITRO_COMPAT_DIR)],
        input=json.dumps(payload), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    checked = json.loads(result.stdout)
    assert checked["round_trip"] is True
    assert checked["frames"] == {"corner": [[84, 84, 3], "uint8"], "corner2": [[84, 84, 3], "uint8"]}
    assert checked["image_round_trip"] is True
    assert checked["proprio_dim"] == 3 + 4 + 3 + 3 + 1  # ee_pos, ee_quat, ee_vel_lin, ee_vel_ang, gripper
    assert checked["ee_quat"] == pytest.approx(observation["proprio"]["ee_quat"], abs=1e-6)
    assert checked["extra_key_refused"] is True  # extra="forbid", as in Kinitro
    assert checked["encoded_image_keys"] == ["data", "dtype", "shape"]
    action = checked["action"]
    assert set(action) == {"continuous", "discrete", "extra"}
    parsed = parse_action({"action": action})  # what the evaluator makes of it
    assert parsed.ee_twist == pytest.approx(np.linspace(-1, 1, 7)[:6], abs=1e-6)
    assert parsed.gripper == pytest.approx(1.0)


# -- docker mode -------------------------------------------------------------------------------

TEST_IMAGE = "kinitro/miner-runner:kinitro-template-test"


@pytest.fixture(scope="module")
def runner_image() -> Iterator[str]:
    """The miner-runner image rebuilt from this checkout (build_runner_image) under a test tag.

    Needs dockerd and kinitro/base:trixie; sim_images/setup-docker.sh makes both (needs root) and
    the test FAILS if that does not work, as the other docker tests do.
    """
    from kinitro_dagster.miners.runner_image import LOCAL_BASE_IMAGE, build_runner_image

    def ready() -> bool:
        check = subprocess.run(["docker", "image", "inspect", LOCAL_BASE_IMAGE], capture_output=True, check=False)
        return check.returncode == 0

    if not ready():
        setup = subprocess.run([str(REPO / "sim_images" / "setup-docker.sh")], capture_output=True, text=True,
                               env={**os.environ, "KINITRO": str(Path(sys.executable).parent / "kinitro")},
                               timeout=1200, check=False)  # fmt: skip
        if setup.returncode != 0 or not ready():
            pytest.fail(
                f"docker mode tests need dockerd and {LOCAL_BASE_IMAGE}; sim_images/setup-docker.sh failed:\n"
                f"{setup.stdout[-2000:]}\n{setup.stderr[-3000:]}\nFix that, or deselect with -m 'not docker'.",
                pytrace=False,
            )
    build_runner_image(TEST_IMAGE, base_image=LOCAL_BASE_IMAGE, echo=lambda _line: None)
    yield TEST_IMAGE
    subprocess.run(["docker", "image", "rm", TEST_IMAGE], capture_output=True, check=False)


@pytest.mark.docker
@pytest.mark.slow
def test_template_plays_a_metaworld_episode_with_cameras_in_the_miner_runner_image(runner_image, env, tmp_path):
    from kinitro_dagster.miners.docker_deployment import DockerDeployment, DockerOptions

    policy = tmp_path / "kinitro_template"  # without the __pycache__ local mode may have left
    shutil.copytree(TEMPLATE, policy, ignore=shutil.ignore_patterns("__pycache__"))
    options = DockerOptions(image=runner_image, memory="1Gi", ttl_s=0, warmup_timeout=60)
    with DockerDeployment(policy, options=options) as deployment, PolicyClient(deployment.base_url) as client:
        health = client.health()
        record = run_episode(env, client, uid=3, episode=0, seed=17)
        log = deployment.log_tail()
    assert health["status"] == "healthy", log
    assert (record.error_kind, record.error) == (None, None), log
    assert record.steps == CAMERAS.max_steps
