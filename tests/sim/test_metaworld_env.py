"""MetaWorld env: wire-format observations, seeding, the action mapping, rendering (real MuJoCo)."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator

import metaworld
import mujoco
import numpy as np
import pytest

from kinitro_dagster.protocol import OBSERVATION_KEYS, PolicyAction
from kinitro_dagster.sim.base import EnvConfig, make_env
from kinitro_dagster.sim.metaworld import METAWORLD_HAND_STEP_M, MetaWorldEnv
from kinitro_dagster.sim.registry import validate_env_id

os.environ.setdefault("MUJOCO_GL", "egl")

NO_IMAGES = EnvConfig(use_images=False, privileged_state=True)
STILL = PolicyAction(ee_twist=np.zeros(6), gripper=0.0)


@pytest.fixture(scope="module")
def pick_place() -> Iterator[MetaWorldEnv]:
    env = MetaWorldEnv("metaworld/pick-place-v3", EnvConfig(privileged_state=True))
    yield env
    env.close()


@pytest.fixture(scope="module")
def reach_state_only() -> Iterator[MetaWorldEnv]:
    env = MetaWorldEnv("metaworld/reach-v3", NO_IMAGES)
    yield env
    env.close()


def decode(image: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(image["data"]), dtype=image["dtype"]).reshape(image["shape"])


def test_observation_has_exactly_kinitro_keys_and_is_json(pick_place: MetaWorldEnv) -> None:
    obs = pick_place.reset(seed=7)
    assert tuple(obs) == OBSERVATION_KEYS
    assert json.loads(json.dumps(obs, allow_nan=False)) == obs  # only JSON types, nothing non-finite
    proprio = obs["proprio"]
    assert {k: len(v) for k, v in proprio.items()} == {
        "ee_pos": 3, "ee_quat": 4, "ee_vel_lin": 3, "ee_vel_ang": 3, "gripper": 1,
    }  # fmt: skip
    assert math.isclose(np.linalg.norm(proprio["ee_quat"]), 1.0, rel_tol=1e-6)
    assert 0.0 <= proprio["gripper"][0] <= 1.0
    assert set(obs["rgb"]) == set(obs["cam_intrinsics"]) == set(obs["cam_extrinsics"]) == {"corner", "corner2"}
    for image in obs["rgb"].values():
        assert image["shape"] == [84, 84, 3] and image["dtype"] == "uint8"
        assert decode(image).shape == (84, 84, 3)
    assert np.array(obs["cam_intrinsics"]["corner"]).shape == (3, 3)
    assert np.array(obs["cam_extrinsics"]["corner"]).shape == (4, 4)
    assert len(obs["extra"]["state"]) == 39


def test_images_are_not_black_in_either_camera(pick_place: MetaWorldEnv) -> None:
    obs = pick_place.reset(seed=1)
    for camera, image in obs["rgb"].items():
        pixels = decode(image).astype(np.float64)
        assert pixels.std() > 10.0, f"{camera} image is flat (std {pixels.std():.1f}): rendering is broken"


def test_a_second_env_in_the_same_process_still_renders(pick_place: MetaWorldEnv) -> None:
    pick_place.reset(seed=1)
    with MetaWorldEnv("metaworld/drawer-open-v3") as other:
        obs = other.reset(seed=1)
        assert all(decode(image).std() > 10.0 for image in obs["rgb"].values())


def test_camera_matrices_project_the_object_onto_its_own_pixels(pick_place: MetaWorldEnv) -> None:
    obs = pick_place.reset(seed=11)
    model, data = pick_place._model, pick_place._data
    geom = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "objGeom")
    segmenter = mujoco.Renderer(model, 84, 84)
    segmenter.enable_segmentation_rendering()
    try:
        for camera in ("corner", "corner2"):
            k = np.array(obs["cam_intrinsics"][camera])
            world_from_camera = np.array(obs["cam_extrinsics"][camera])
            in_camera = np.linalg.inv(world_from_camera) @ np.append(data.geom_xpos[geom], 1.0)
            assert in_camera[2] > 0, "object must be in front of the camera (OpenCV: +z forward)"
            u, v = (k @ in_camera[:3])[:2] / in_camera[2]
            segmenter.update_scene(data, camera=camera)
            ids = segmenter.render()[::-1, ::-1, 0]  # turned like the delivered image
            assert ids[round(v), round(u)] == geom, f"{camera}: projected pixel is not on the object"
    finally:
        segmenter.close()


def test_privileged_state_shows_the_goal_and_it_depends_on_the_seed(reach_state_only: MetaWorldEnv) -> None:
    goals = []
    for seed in (3, 4):
        state = np.array(reach_state_only.reset(seed)["extra"]["state"])
        goal = state[-3:]
        assert np.linalg.norm(goal) > 0.1, "goal is zeroed: the env is partially observable"
        np.testing.assert_allclose(goal, reach_state_only._env._target_pos)
        after_step = np.array(reach_state_only.step(STILL).observation["extra"]["state"])
        np.testing.assert_allclose(after_step[-3:], goal)
        goals.append(goal)
    assert not np.allclose(goals[0], goals[1])


@pytest.mark.parametrize("env_id", ["metaworld/reach-v3", "metaworld/push-v3", "metaworld/pick-place-v3"])
def test_first_frame_shows_the_goal_where_this_episode_has_it(env_id: str) -> None:
    """MetaWorld's reset leaves the goal site where the previous episode had it until a step; the
    first observation (its frames) must show this episode's goal, and the episode play as before."""
    env = MetaWorldEnv(env_id, EnvConfig(use_images=False, privileged_state=True))
    goal_site = mujoco.mj_name2id(env._model, mujoco.mjtObj.mjOBJ_SITE, "goal")
    rng = np.random.default_rng(3)
    actions = [PolicyAction(rng.uniform(-1, 1, 6), float(rng.uniform())) for _ in range(60)]

    def play(seed: int) -> np.ndarray:
        first = env.reset(seed)
        assert np.allclose(env._data.site_xpos[goal_site], first["extra"]["state"][-3:]), seed
        return np.array([env.step(a).observation["extra"]["state"] for a in actions])

    try:
        placed = [play(seed) for seed in (5, 6)]  # the second reset starts where the first episode left
        env._place_sites = lambda: None  # as MetaWorld alone would have it: only the frames differ
        stock = [env.reset(seed) and np.array([env.step(a).observation["extra"]["state"] for a in actions])
                 for seed in (5, 6)]  # fmt: skip
    finally:
        env.close()
    assert all(np.array_equal(a, b) for a, b in zip(placed, stock, strict=True))


def test_no_privileged_state_means_empty_extra() -> None:
    with MetaWorldEnv("metaworld/reach-v3", EnvConfig(use_images=False)) as env:
        assert env.reset(0)["extra"] == {}


def test_images_off_leaves_camera_channels_empty(reach_state_only: MetaWorldEnv) -> None:
    obs = reach_state_only.reset(0)
    assert obs["rgb"] == {} and obs["depth"] == {}
    assert obs["cam_intrinsics"] == {} and obs["cam_extrinsics"] == {}


def test_image_size_and_cameras_are_configurable() -> None:
    with MetaWorldEnv("metaworld/reach-v3", EnvConfig(cameras=("corner2",), image_size=48)) as env:
        obs = env.reset(0)
        assert list(obs["rgb"]) == ["corner2"]
        assert obs["rgb"]["corner2"]["shape"] == [48, 48, 3]
        assert decode(obs["rgb"]["corner2"]).std() > 10.0


def test_unknown_camera_is_rejected_with_the_list_of_cameras() -> None:
    with pytest.raises(ValueError, match="corner2"):
        MetaWorldEnv("metaworld/reach-v3", EnvConfig(cameras=("nope",)))


def _trajectory_digest(env: MetaWorldEnv, seed: int, n_steps: int) -> str:
    """Hash of everything an episode produces under a fixed pseudo-random action sequence."""
    actions = np.random.default_rng(1234).uniform(-1, 1, (n_steps, 7))
    digest = hashlib.sha256(json.dumps(env.reset(seed)).encode())
    for action in actions:
        result = env.step(PolicyAction(ee_twist=action[:6], gripper=(action[6] + 1) / 2))
        digest.update(json.dumps([result.observation, result.reward, result.success, result.done]).encode())
    return digest.hexdigest()


_DIGEST_SCRIPT = """
import sys
from kinitro_dagster.sim.base import EnvConfig
from kinitro_dagster.sim.metaworld import MetaWorldEnv
sys.path.insert(0, sys.argv[1])
from test_metaworld_env import _trajectory_digest
with MetaWorldEnv("metaworld/pick-place-v3", EnvConfig(privileged_state=True)) as env:
    print(_trajectory_digest(env, 99, 25))
"""


def test_same_seed_gives_the_same_episode_in_this_and_another_process(pick_place: MetaWorldEnv) -> None:
    first = _trajectory_digest(pick_place, 99, 25)
    other_seed = _trajectory_digest(pick_place, 5, 25)  # an episode in between must leave no trace
    again = _trajectory_digest(pick_place, 99, 25)
    assert first == again
    assert first != other_seed
    out = subprocess.run(
        [sys.executable, "-c", _DIGEST_SCRIPT, os.path.dirname(__file__)],
        capture_output=True, text=True, check=True, timeout=120,
        env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")},
    )  # fmt: skip
    assert out.stdout.strip() == first


def test_twist_of_one_moves_the_hand_target_one_step_of_metaworld(reach_state_only: MetaWorldEnv) -> None:
    reach_state_only.reset(0)
    mocap = reach_state_only._data.mocap_pos[0]
    before = mocap.copy()
    reach_state_only.step(PolicyAction(ee_twist=np.array([1.0, 0, -0.5, 0, 0, 0]), gripper=0.0))
    np.testing.assert_allclose(mocap - before, [METAWORLD_HAND_STEP_M, 0, -0.5 * METAWORLD_HAND_STEP_M], atol=1e-9)
    before = mocap.copy()
    reach_state_only.step(PolicyAction(ee_twist=np.array([0, -50.0, 0, 9, 9, 9]), gripper=0.0))
    np.testing.assert_allclose(mocap - before, [0, -METAWORLD_HAND_STEP_M, 0], atol=1e-9)  # clipped to 1


def test_gripper_one_closes_and_zero_opens_the_fingers(reach_state_only: MetaWorldEnv) -> None:
    obs = reach_state_only.reset(0)
    for _ in range(15):
        obs = reach_state_only.step(PolicyAction(ee_twist=np.zeros(6), gripper=1.0)).observation
    closed = obs["proprio"]["gripper"][0]
    for _ in range(15):
        obs = reach_state_only.step(PolicyAction(ee_twist=np.zeros(6), gripper=0.0)).observation
    opened = obs["proprio"]["gripper"][0]
    assert closed > 0.5 > opened


@pytest.mark.parametrize(
    "action",
    [
        PolicyAction(ee_twist=np.array([np.nan, 0, 0, 0, 0, 0]), gripper=0.5),
        PolicyAction(ee_twist=np.array([0, 0, 0, 0, 0, np.inf]), gripper=0.5),
        PolicyAction(ee_twist=np.zeros(6), gripper=float("nan")),
        PolicyAction(ee_twist=np.zeros(3), gripper=0.5),
        PolicyAction(ee_twist=np.zeros(6), gripper=None),  # type: ignore[arg-type]
    ],
    ids=["nan-twist", "inf-angular", "nan-gripper", "short-twist", "no-gripper"],
)
def test_malformed_action_is_refused_and_never_stepped(reach_state_only: MetaWorldEnv, action) -> None:
    reach_state_only.reset(0)
    qpos = reach_state_only._data.qpos.copy()
    with pytest.raises(ValueError):
        reach_state_only.step(action)
    assert reach_state_only.steps == 0
    np.testing.assert_array_equal(reach_state_only._data.qpos, qpos)
    assert np.all(np.isfinite(reach_state_only._data.mocap_pos))


def test_episode_is_done_at_500_steps_and_refuses_more(reach_state_only: MetaWorldEnv) -> None:
    reach_state_only.reset(0)
    dones = [reach_state_only.step(STILL).done for _ in range(500)]
    assert dones == [False] * 499 + [True]
    with pytest.raises(RuntimeError, match="reset"):
        reach_state_only.step(STILL)


def test_shorter_max_steps_ends_the_episode_early() -> None:
    with MetaWorldEnv("metaworld/reach-v3", EnvConfig(use_images=False, max_steps=3)) as env:
        env.reset(0)
        assert [env.step(STILL).done for _ in range(3)] == [False, False, True]
    with pytest.raises(ValueError, match="max_steps"):
        MetaWorldEnv("metaworld/reach-v3", EnvConfig(max_steps=501))


def test_success_stays_true_after_the_hand_leaves_the_goal(reach_state_only: MetaWorldEnv) -> None:
    obs = reach_state_only.reset(2)
    goal = np.array(obs["extra"]["state"][-3:])
    result = None
    for _ in range(200):
        hand = np.array(obs["extra"]["state"][:3])
        twist = np.zeros(6)
        twist[:3] = np.clip(10 * (goal - hand), -1, 1)
        result = reach_state_only.step(PolicyAction(ee_twist=twist, gripper=0.0))
        obs = result.observation
        if result.success:
            break
    assert result is not None and result.success, "driving the hand to the goal must succeed"
    for _ in range(30):  # leave the goal
        result = reach_state_only.step(PolicyAction(ee_twist=np.array([0, 0, 1.0, 0, 0, 0]), gripper=0.0))
    hand = np.array(result.observation["extra"]["state"][:3])
    assert np.linalg.norm(hand - goal) > 0.05
    assert result.success


def test_task_config_names_the_task_and_carries_no_seed(reach_state_only: MetaWorldEnv) -> None:
    config = reach_state_only.task_config()
    assert config == {"env_id": "metaworld/reach-v3", "env_name": "metaworld", "task_name": "reach-v3",
                      "task_id": config["task_id"]}  # fmt: skip
    assert isinstance(config["task_id"], int) and "seed" not in config


@pytest.mark.parametrize(
    ("env_id", "task"),
    [("metaworld/button-press-v3", "button-press-topdown-v3"), ("metaworld/peg-insert-v3", "peg-insert-side-v3"),
     ("metaworld/button-press-topdown-v3", "button-press-topdown-v3")],  # an old id: an alias
)  # fmt: skip
def test_kinitro_ids_build_the_metaworld_task_kinitro_plays(env_id: str, task: str) -> None:
    with make_env(env_id, EnvConfig(use_images=False, privileged_state=True)) as env:
        obs = env.reset(seed=3)
        result = env.step(STILL)
        config = env.task_config()
        sawyer = env._env  # the MetaWorld env underneath

    tasks = metaworld.env_dict.ALL_V3_ENVIRONMENTS
    assert [name for name, cls in tasks.items() if isinstance(sawyer, cls)] == [task]
    assert config["task_name"] == task and config["env_id"] == env.env_id == validate_env_id(env_id)
    assert config["task_id"] == list(tasks).index(task)
    assert len(obs["extra"]["state"]) == 39 and not result.done


def test_make_env_builds_metaworld_and_names_known_ids_for_unknown_ones() -> None:
    env = make_env("metaworld/reach-v3", EnvConfig(use_images=False))
    try:
        assert isinstance(env, MetaWorldEnv) and env.env_id == "metaworld/reach-v3"
    finally:
        env.close()
    with pytest.raises(ValueError, match="metaworld/pick-place-v3"):
        make_env("procthor/kitchen-v0")
    with pytest.raises(ValueError, match="metaworld/pick-place-v3"):
        make_env("metaworld/no-such-task-v3")


def test_seed_must_be_a_non_negative_integer(reach_state_only: MetaWorldEnv) -> None:
    for bad in (-1, 2**32, 1.5):
        with pytest.raises(ValueError, match="seed"):
            reach_state_only.reset(bad)  # type: ignore[arg-type]


_RSS_SCRIPT = """
import numpy as np
from kinitro_dagster.protocol import PolicyAction
from kinitro_dagster.sim.base import EnvConfig
from kinitro_dagster.sim.metaworld import MetaWorldEnv
with MetaWorldEnv("metaworld/pick-place-v3", EnvConfig(privileged_state=True)) as env:
    for seed in range(3):
        env.reset(seed)
        for _ in range(100):
            env.step(PolicyAction(ee_twist=np.full(6, 0.3), gripper=0.5))
    status = open("/proc/self/status").read()
    print(*(int(status.split(key)[1].split()[0]) // 1024 for key in ("VmRSS:", "VmHWM:")))
"""


@pytest.mark.slow
def test_one_env_with_both_cameras_stays_under_512_mib() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT], capture_output=True, text=True, check=True, timeout=300,
        env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")},
    )  # fmt: skip
    rss_mib, peak_mib = map(int, out.stdout.split())
    print(f"env + renderer: RSS {rss_mib} MiB, peak {peak_mib} MiB")
    assert peak_mib <= 512
