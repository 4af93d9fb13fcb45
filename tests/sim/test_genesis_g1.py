"""genesis/g1-v0 on Genesis (CPU here): what a Kinitro-trained policy sees and sends, and when an episode ends.

Slow: Genesis starts in ~20 s and builds a scene in 5-10 s once its kernels are cached (the first build on a
host compiles them: ~1-2 min). One env serves the module; scenes are few.
"""

from __future__ import annotations

import base64

import mujoco
import numpy as np
import pytest

from kinitro_dagster.protocol import OBSERVATION_KEYS, PolicyAction
from kinitro_dagster.sim import g1_model
from kinitro_dagster.sim.base import EnvConfig, make_env
from kinitro_dagster.sim.g1_tasks import TaskType, generate_scene, generate_task
from kinitro_dagster.sim.genesis_g1 import (
    ACTION_SCALE,
    DEFAULT_POSE,
    JOINT_COUNT,
    JOINT_NAMES,
    GenesisG1Env,
    joint_targets,
)

pytestmark = pytest.mark.slow

# Kinitro's Observation model (kinitro/rl_interface.py) and what its genesis env fills in.
KINITRO_PROPRIO = {"base_pos": 3, "base_quat": 4, "base_vel": 6, "joint_pos": 43, "joint_vel": 43}


def _seed_of(kind: TaskType) -> int:
    return next(seed for seed in range(1000) if generate_task(seed, generate_scene(seed)).task_type is kind)


@pytest.fixture(scope="module")
def env() -> GenesisG1Env:
    env = make_env("genesis/g1-v0", EnvConfig(max_steps=40))
    yield env
    env.close()


def _decode(image: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(image["data"]), dtype=np.dtype(image["dtype"])).reshape(image["shape"])


def _hold() -> PolicyAction:
    return PolicyAction(joint_pos_target=np.zeros(JOINT_COUNT))


def test_observation_and_task_config_are_kinitros(env: GenesisG1Env) -> None:
    seed = _seed_of(TaskType.NAVIGATE)
    observation = env.reset(seed)
    assert tuple(observation) == OBSERVATION_KEYS
    assert {key: len(value) for key, value in observation["proprio"].items()} == KINITRO_PROPRIO
    assert list(observation["proprio"]) == list(KINITRO_PROPRIO)  # Kinitro's proprio_array order
    w = observation["proprio"]["base_quat"][0]
    assert w == pytest.approx(1.0, abs=0.05)  # w first, upright at spawn
    rgb, depth = _decode(observation["rgb"]["ego"]), _decode(observation["depth"]["ego"])
    assert observation["rgb"]["ego"]["dtype"] == "uint8" and observation["depth"]["ego"]["dtype"] == "float32"
    assert rgb.shape == (84, 84, 3) and rgb.dtype == np.uint8 and rgb.std() > 0
    assert depth.shape == (84, 84) and depth.dtype == np.float32 and np.isfinite(depth).all() and depth.max() > 0
    assert observation["cam_intrinsics"] == {} and observation["cam_extrinsics"] == {}
    task = generate_task(seed, generate_scene(seed))
    assert observation["extra"] == {"task_prompt": task.prompt, "task_type": "navigate"}  # no state without privilege
    assert env.task_config() == {"env_id": "genesis/g1-v0", "env_name": "genesis", "task_name": "g1-v0",
                                 "seed": seed, "task_id": seed}  # fmt: skip
    # The robot spawns with its pelvis 0.75 m above the model's own 0.793 m and falls onto the floor.
    assert observation["proprio"]["base_pos"][2] == pytest.approx(1.543, abs=0.02)
    # In Kinitro's default pose, one step on, but for joints whose default lies beyond their limit.
    model = mujoco.MjModel.from_xml_path(str(g1_model.model_path()))
    low, high = np.array([model.joint(name).range for name in JOINT_NAMES]).T
    inside = (low <= DEFAULT_POSE) & (high >= DEFAULT_POSE)
    assert not inside[10]  # the right knee: Kinitro's -0.2 rad is past its -0.087 limit
    joints = np.array(observation["proprio"]["joint_pos"])
    assert np.allclose(joints[inside], DEFAULT_POSE[inside], atol=0.05)  # unheld for one step


def test_privileged_state_names_the_task_objects_positions() -> None:
    seed = _seed_of(TaskType.PLACE)
    with make_env("genesis/g1-v0", EnvConfig(max_steps=5, use_images=False, privileged_state=True)) as env:
        state = env.reset(seed)["extra"]["state"]
        task = env.task
    assert state["target_spawn"] == list(task.target.position)
    assert np.allclose(state["target"], task.target.position, atol=0.05)  # resting where it spawned
    assert np.allclose(state["destination"], task.destination.position, atol=0.05)


def test_actions_drive_joints_to_the_default_pose_plus_the_scaled_target(env: GenesisG1Env) -> None:
    env.reset(_seed_of(TaskType.NAVIGATE))
    action = np.zeros(JOINT_COUNT)
    elbow = JOINT_NAMES.index("left_elbow_joint")
    action[elbow] = 0.8
    for _ in range(35):
        env.step(PolicyAction(joint_pos_target=action))
    expected = DEFAULT_POSE[elbow] + 0.8 * ACTION_SCALE[elbow]
    assert env.joint_positions()[elbow] == pytest.approx(expected, abs=0.05)


def test_the_same_seed_and_actions_play_the_same_episode_rebuilt_or_reset(env: GenesisG1Env) -> None:
    seed, other = _seed_of(TaskType.NAVIGATE), _seed_of(TaskType.PICKUP)
    rng = np.random.default_rng(0)
    actions = [PolicyAction(joint_pos_target=rng.uniform(-1, 1, JOINT_COUNT)) for _ in range(5)]

    def play() -> list:
        observations = [env.reset(seed)["proprio"]]
        observations += [env.step(action).observation["proprio"] for action in actions]
        return observations

    first = play()  # the scene is reset in place
    assert play() == first
    env.reset(other)  # another scene ...
    assert play() == first  # ... and this one rebuilt


def test_success_ends_the_episode_navigate_by_the_base_pickup_by_the_object(env: GenesisG1Env) -> None:
    seed = _seed_of(TaskType.NAVIGATE)
    env.reset(seed)
    x, y, _ = env.task.target.position
    env.set_base_pose((x - 0.2, y, 0.9))
    result = env.step(_hold())
    assert result.success and result.done
    seed = _seed_of(TaskType.PICKUP)
    env.reset(seed)
    assert not env.step(_hold()).success
    target = env.task.target
    env.set_object_position(target.object_id, (target.position[0], target.position[1], 0.6))
    result = env.step(_hold())
    assert result.success and result.done


def test_a_fall_ends_the_episode_as_a_failure(env: GenesisG1Env) -> None:
    env.reset(_seed_of(TaskType.PICKUP))
    env.set_base_pose((0.0, 0.0, 0.15), quat=(0.7071, 0.0, 0.7071, 0.0))  # lying on its front
    result = env.step(_hold())
    assert result.done and not result.success and result.reward == -1.0


def test_an_end_effector_action_is_refused_naming_the_channel(env: GenesisG1Env) -> None:
    env.reset(_seed_of(TaskType.PICKUP))
    with pytest.raises(ValueError, match="joint_pos_target"):
        env.step(PolicyAction(ee_twist=np.zeros(6), gripper=0.0))


def test_joint_targets_clip_pad_and_scale_around_the_default_pose() -> None:
    targets = joint_targets(PolicyAction(joint_pos_target=np.array([2.0, -3.0, 0.5])))
    assert targets[0] == pytest.approx(DEFAULT_POSE[0] + ACTION_SCALE[0])
    assert targets[1] == pytest.approx(DEFAULT_POSE[1] - ACTION_SCALE[1])
    assert targets[2] == pytest.approx(DEFAULT_POSE[2] + 0.5 * ACTION_SCALE[2])
    assert np.array_equal(targets[3:], DEFAULT_POSE[3:])  # padded with zeros, as Kinitro does
    with pytest.raises(ValueError, match="not finite"):
        joint_targets(PolicyAction(joint_pos_target=np.array([np.nan])))
