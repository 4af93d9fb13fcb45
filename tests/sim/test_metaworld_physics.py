"""MetaWorld physics randomization, as Kinitro evaluates it: each episode's friction and damping
factors come from its seed, are applied to the model's original values (never compounding), take
effect from the reset's own settling on, and are the same for every miner that plays the seed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kinitro_dagster.protocol import PolicyAction
from kinitro_dagster.sim.base import EnvConfig
from kinitro_dagster.sim.metaworld import PHYSICS_RANGES, MetaWorldEnv, physics_factors
from kinitro_dagster.warehouse.records import CycleConfiguration

ENV_ID = "metaworld/pick-place-v3"
RANDOMIZED = EnvConfig(use_images=False, privileged_state=True, physics_randomization=True)
STOCK = EnvConfig(use_images=False, privileged_state=True, physics_randomization=False)
ACTIONS = [PolicyAction(a[:6], float(a[6])) for a in np.random.default_rng(4).uniform(-1, 1, (80, 7))]


def play(env: MetaWorldEnv, seed: int) -> np.ndarray:
    first = env.reset(seed)
    return np.array([first["extra"]["state"], *(env.step(a).observation["extra"]["state"] for a in ACTIONS)])


@pytest.fixture(scope="module")
def env():
    environment = MetaWorldEnv(ENV_ID, RANDOMIZED)
    yield environment
    environment.close()


def test_factors_come_from_the_seed_within_kinitros_ranges():
    draws = [physics_factors(seed) for seed in range(200)]
    assert physics_factors(17) == physics_factors(17)
    assert len({d["friction"] for d in draws}) == 200
    for name, (low, high) in PHYSICS_RANGES.items():
        values = [d[name] for d in draws]
        assert low <= min(values) and max(values) <= high and max(values) - min(values) > 0.8 * (high - low)


def test_each_episode_scales_the_models_own_values_never_the_last_episodes(env):
    friction, damping = (v.copy() for v in env._original_physics)
    for seed in (5, 9, 5, 5):
        env.reset(seed)
        factors = physics_factors(seed)
        assert env.physics == factors
        assert np.array_equal(env._model.geom_friction, friction * factors["friction"])
        assert np.array_equal(env._model.dof_damping, damping * factors["damping"])


def test_same_seed_same_episode_whatever_came_before_and_in_every_worker(env):
    fresh = MetaWorldEnv(ENV_ID, RANDOMIZED)  # another worker's env
    try:
        first = play(fresh, 31)
        play(env, 77)  # another episode first: its physics must not leak into the next
        assert np.array_equal(play(env, 31), first)
    finally:
        fresh.close()


def test_randomized_physics_changes_the_episode_and_off_leaves_metaworld_as_it_is(env):
    stock = MetaWorldEnv(ENV_ID, STOCK)
    try:
        assert not np.array_equal(play(env, 31), play(stock, 31))  # the factors take effect
        original = stock._original_physics
        play(stock, 12)
        assert stock.physics == {}
        assert np.array_equal(stock._model.geom_friction, original[0])
        assert np.array_equal(stock._model.dof_damping, original[1])
    finally:
        stock.close()


def test_the_cycle_records_it_and_cycles_recorded_before_ran_without():
    recorded = CycleConfiguration(env_ids=(ENV_ID,), episodes_per_env=3, eval_interval_blocks=300, max_timesteps=500,
                                  action_timeout=0.5, eval_timeout=300.0, use_images=True, privileged_state=False,
                                  pareto_temperature=1.0, cycle_timeout_seconds=7200, code_version="x",
                                  physics_randomization=True)  # fmt: skip
    assert CycleConfiguration.from_json(json.loads(json.dumps(recorded.to_json()))) == recorded
    older = {k: v for k, v in recorded.to_json().items() if k != "physics_randomization"}
    assert CycleConfiguration.from_json(older).physics_randomization is False
