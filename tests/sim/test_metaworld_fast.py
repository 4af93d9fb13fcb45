"""The fast paths change nothing: stock and accelerated MetaWorld agree to the bit, step by step."""

from __future__ import annotations

import os
import warnings

import metaworld
import numpy as np
import pytest
from metaworld.policies import ENV_POLICY_MAP
from scipy.spatial.transform import Rotation

from kinitro_dagster.sim.metaworld import _metaworld_task
from kinitro_dagster.sim.metaworld_fast import _fast_class, accelerate, quat_from_rotation_matrix
from kinitro_dagster.sim.registry import METAWORLD_ENV_IDS, env_task_name

os.environ.setdefault("MUJOCO_GL", "egl")


def stock_env(task_name: str):
    env = metaworld.env_dict.ALL_V3_ENVIRONMENTS[task_name]()
    env.set_task(_metaworld_task(task_name))
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True
    return env


def assert_same_step(stock: tuple, fast: tuple, where: str) -> None:
    obs, reward, terminated, truncated, info = stock
    fast_obs, fast_reward, fast_terminated, fast_truncated, fast_info = fast
    assert obs.dtype == fast_obs.dtype and np.array_equal(obs, fast_obs), where
    assert (reward, terminated, truncated) == (fast_reward, fast_terminated, fast_truncated), where
    assert info == fast_info, where


def play_both(task_name: str, seed: int, actions_of) -> int:
    """Step a stock and an accelerated env in lockstep from `seed`; returns the steps compared."""
    stock, fast = stock_env(task_name), accelerate(stock_env(task_name))
    try:
        for env in (stock, fast):
            env.seed(seed)
        obs, _ = stock.reset()
        fast_obs, _ = fast.reset()
        assert np.array_equal(obs, fast_obs)
        steps = 0
        while steps < stock.max_path_length:
            action = actions_of(obs, steps)
            result = stock.step(action)
            assert_same_step(result, fast.step(action), f"{task_name} seed {seed} step {steps}")
            obs = result[0]
            steps += 1
        return steps
    finally:
        stock.close()
        fast.close()


@pytest.mark.parametrize("env_id", METAWORLD_ENV_IDS)
def test_random_actions_give_identical_episodes(env_id: str) -> None:
    actions = np.random.default_rng(7).uniform(-1, 1, size=(500, 4)).astype(np.float32)
    assert play_both(env_task_name(env_id), seed=11, actions_of=lambda _obs, step: actions[step]) == 500


@pytest.mark.slow
@pytest.mark.parametrize("env_id", METAWORLD_ENV_IDS)
def test_scripted_expert_gives_identical_episodes(env_id: str) -> None:
    """Contact, grasping and success: the states a random policy rarely reaches."""
    expert = ENV_POLICY_MAP[env_task_name(env_id)]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the experts warn whenever their raw action exceeds [-1, 1]
        for seed in (3, 4):
            play_both(env_task_name(env_id), seed, lambda obs, _step: np.clip(expert.get_action(obs), -1, 1))


def test_fast_quaternion_matches_scipy_to_the_bit() -> None:
    matrices = Rotation.random(20_000, rng=np.random.default_rng(5)).as_matrix()
    # The branches: trace largest, and each diagonal element largest (half-turns about x, y, z).
    half_turns = [np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1])]
    matrices = np.concatenate([matrices, [np.eye(3), *half_turns]])
    for matrix in matrices:
        fast = quat_from_rotation_matrix(matrix.reshape(-1))
        assert fast is not None
        assert np.array_equal(fast, Rotation.from_matrix(matrix).as_quat())


@pytest.mark.parametrize(
    "matrix",
    [
        np.diag([1.0, 1.0, -1.0]),  # a reflection: SciPy raises
        np.eye(3) * 2.0,  # not orthogonal: SciPy orthogonalizes first
        np.eye(3) + 1e-9,  # off the rotation group by more than SciPy's tolerance
        np.zeros((3, 3)),
    ],
)
def test_fast_quaternion_defers_to_scipy_off_the_rotation_group(matrix: np.ndarray) -> None:
    assert quat_from_rotation_matrix(matrix.reshape(-1)) is None


def test_accelerate_changes_only_the_instance() -> None:
    fast, stock = accelerate(stock_env("reach-v3")), stock_env("reach-v3")
    try:
        assert type(fast) is not type(stock) and isinstance(fast, type(stock))
        assert accelerate(fast) is fast
        assert type(stock).__name__ == "SawyerReachEnvV3"
    finally:
        fast.close()
        stock.close()


def test_an_env_class_keeps_its_own_overrides() -> None:
    class OwnReach(metaworld.env_dict.ALL_V3_ENVIRONMENTS["reach-v3"]):
        def _get_obs(self):
            return super()._get_obs()

    fast = _fast_class(OwnReach)
    assert fast._get_obs is OwnReach._get_obs
    assert fast.step is not OwnReach.step  # what it kept from SawyerXYZEnv is replaced
