"""The G1 baseline of the scripted expert miner (examples/miners/scripted_expert/g1_baseline.py).

The fast tests check its wire constants against the env's and its choice of move; the slow ones play
it in Genesis: it keeps the robot standing where Kinitro's default pose falls, and reaches navigate
targets that its measured landings cover.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kinitro_dagster.protocol import PolicyAction
from kinitro_dagster.sim.g1_tasks import TaskType, generate_scene, generate_task
from kinitro_dagster.sim.genesis_g1 import ACTION_SCALE, DEFAULT_POSE, JOINT_NAMES, joint_targets

BASELINE_FILE = Path(__file__).resolve().parents[2] / "examples" / "miners" / "scripted_expert" / "g1_baseline.py"
UPRIGHT = [1.0, 0.0, 0.0, 0.0]


def _load_baseline():
    spec = importlib.util.spec_from_file_location("g1_baseline", BASELINE_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("g1_baseline", module)
    spec.loader.exec_module(module)
    return module


g1 = _load_baseline()


def _proprio(quat: list[float] = UPRIGHT, base: tuple[float, float, float] = (0.0, 0.0, 0.79)) -> dict:
    return {"base_pos": list(base), "base_quat": quat, "base_vel": [0.0] * 6, "joint_pos": [0.0] * 43,
            "joint_vel": [0.0] * 43}  # fmt: skip


def _reachable(seed: int) -> bool:
    task = generate_task(seed, generate_scene(seed))
    return task.task_type is TaskType.NAVIGATE and g1.choose_move((0.0, 0.0), 0.0, task.target.position[:2]) is not None


def test_the_baseline_uses_the_envs_joint_order_pose_and_scale() -> None:
    assert [f"{name}_joint" for name in g1.WIRE_JOINTS] == list(JOINT_NAMES)
    assert np.array_equal(g1.DEFAULT_POSE, DEFAULT_POSE) and np.array_equal(g1.ACTION_SCALE, ACTION_SCALE)


def test_its_actions_ask_for_the_stance_and_tip_the_ankles_against_the_pitch() -> None:
    controller = g1.G1Baseline()
    level = joint_targets(PolicyAction(joint_pos_target=controller.act(_proprio(), {"task_type": "pickup"})))
    assert level[g1.JOINT["left_knee"]] == pytest.approx(0.1) and level[g1.JOINT["right_knee"]] == pytest.approx(0.05)
    assert level[g1.JOINT["left_ankle_pitch"]] == pytest.approx(0.0)
    pitched = [math.cos(0.05), 0.0, math.sin(0.05), 0.0]  # 0.1 rad nose down
    action = controller.act(_proprio(pitched), {"task_type": "pickup"})
    assert len(action) == 43 and all(-1.0 <= a <= 1.0 for a in action)
    targets = joint_targets(PolicyAction(joint_pos_target=action))
    ankles = targets[[g1.JOINT["left_ankle_pitch"], g1.JOINT["right_ankle_pitch"]]]
    assert ankles == pytest.approx([g1.PITCH_GAIN * 0.1] * 2, abs=1e-6)


def test_it_picks_the_move_landing_nearest_the_goal_in_the_robots_frame() -> None:
    x, y = g1.LANDINGS["lean_0"]
    assert g1.choose_move((0.0, 0.0), 0.0, (x, y)) == "lean_0"
    # Facing +y (yaw 90°), the goal straight ahead lies on +y in the world.
    assert g1.choose_move((1.0, 1.0), math.pi / 2, (1.0 - y, 1.0 + x)) == "lean_0"
    assert g1.choose_move((0.0, 0.0), 0.0, (2.0, 0.0)) is None  # beyond every landing
    assert g1.choose_move((0.0, 0.0), 0.0, (0.2, 0.0)) is None  # at its feet: every move falls past it


def test_it_moves_only_for_a_navigate_task_and_needs_the_privileged_state_for_it() -> None:
    for task_type in ("pickup", "place", "push"):
        controller = g1.G1Baseline()
        for _ in range(g1.SETTLE_STEPS + 1):
            controller.act(_proprio(), {"task_type": task_type})
        assert controller.move is None
    controller = g1.G1Baseline()
    with pytest.raises(ValueError, match="privileged state"):
        for _ in range(g1.SETTLE_STEPS + 1):
            controller.act(_proprio(), {"task_type": "navigate"})


def test_some_navigate_tasks_and_no_others_are_in_reach() -> None:
    seeds = range(400)
    reachable = [seed for seed in seeds if _reachable(seed)]
    navigate = [seed for seed in seeds if generate_task(seed, generate_scene(seed)).task_type is TaskType.NAVIGATE]
    assert set(reachable) <= set(navigate)
    assert 0.2 < len(reachable) / len(navigate) < 0.5  # targets within ~1.3 m, most directions


# -- in the simulator -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env() -> Iterator:
    from kinitro_dagster.sim.base import EnvConfig, make_env

    env = make_env("genesis/g1-v0", EnvConfig(use_images=False, privileged_state=True))
    yield env
    env.close()


def _play(env, seed: int, policy, steps: int = 500) -> tuple[object, list[float]]:
    observation, heights, result = env.reset(seed), [], None
    for _ in range(steps):
        result = env.step(PolicyAction(joint_pos_target=policy(observation)))
        observation = result.observation
        heights.append(observation["proprio"]["base_pos"][2])
        if result.done:
            break
    return result, heights


@pytest.mark.slow
def test_it_keeps_the_robot_standing_where_the_default_pose_falls(env) -> None:
    seed = next(s for s in range(100) if generate_task(s, generate_scene(s)).task_type is TaskType.PICKUP)
    result, heights = _play(env, seed, lambda _: [0.0] * 43, steps=300)
    assert result.done and heights[-1] < 0.3  # Kinitro's default pose falls within 6 s
    controller = g1.G1Baseline()
    result, heights = _play(env, seed, lambda obs: controller.act(obs["proprio"], obs["extra"]), steps=300)
    assert not result.done and min(heights[g1.SETTLE_STEPS :]) > 0.7 and controller.move is None


def _well_within_reach(seed: int) -> bool:
    """A navigate target 10 cm inside the reach of a landing (the robot stands a few cm off its spawn point)."""
    task = generate_task(seed, generate_scene(seed))
    goal = task.target.position[:2]
    return (
        task.task_type is TaskType.NAVIGATE and min(math.dist(goal, xy) for xy in g1.LANDINGS.values()) < g1.REACH - 0.1
    )


@pytest.mark.slow
def test_it_reaches_a_navigate_target_its_landings_cover(env) -> None:
    seed = next(s for s in range(200) if _well_within_reach(s))
    controller = g1.G1Baseline()
    result, _ = _play(env, seed, lambda obs: controller.act(obs["proprio"], obs["extra"]))
    assert controller.move is not None and result.success and result.done


@pytest.mark.slow
@pytest.mark.parametrize("move", ["lean_0", "lean_180", "topple_left"])
def test_a_move_lands_where_its_table_says(env, move: str) -> None:
    seed = next(s for s in range(100) if generate_task(s, generate_scene(s)).task_type is TaskType.PICKUP)
    controller = g1.G1Baseline(forced_move=move)
    starts = []

    def policy(observation: dict) -> list[float]:
        if controller.steps == g1.SETTLE_STEPS:  # where and how the robot stands as the move starts
            starts.append((observation["proprio"]["base_pos"], g1.rpy(observation["proprio"]["base_quat"])[2]))
        return controller.act(observation["proprio"], observation["extra"])

    result, heights = _play(env, seed, policy)
    assert result.done and heights[-1] < 0.3
    (x0, y0, _), yaw = starts[0]
    x, y, _ = env.base_position()
    local = (math.cos(yaw) * (x - x0) + math.sin(yaw) * (y - y0), -math.sin(yaw) * (x - x0) + math.cos(yaw) * (y - y0))
    assert math.dist(local, g1.LANDINGS[move]) < 0.05
