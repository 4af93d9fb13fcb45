"""MetaWorld's scripted experts solve every env through our action mapping (DESIGN §6).

The expert reads the privileged 39-d state, its native action is converted to ee_twist + gripper
and stepped through `PolicyAction`: this pins that the documented action scale is solvable.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from metaworld.policies import ENV_POLICY_MAP

from kinitro_dagster.sim.base import EnvConfig
from kinitro_dagster.sim.metaworld import MetaWorldEnv, from_metaworld_action
from kinitro_dagster.sim.registry import METAWORLD_ENV_IDS, env_task_name

os.environ.setdefault("MUJOCO_GL", "egl")

STATE_ONLY = EnvConfig(use_images=False, privileged_state=True)


def expert_successes(env_id: str, seeds: list[int]) -> list[bool]:
    expert = ENV_POLICY_MAP[env_task_name(env_id)]()
    outcomes = []
    with MetaWorldEnv(env_id, STATE_ONLY) as env, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the experts warn whenever their raw action exceeds [-1, 1]
        for seed in seeds:
            obs, result = env.reset(seed), None
            while result is None or not (result.done or result.success):
                native = expert.get_action(np.asarray(obs["extra"]["state"]))
                result = env.step(from_metaworld_action(native))
                obs = result.observation
            outcomes.append(result.success)
    return outcomes


@pytest.mark.parametrize("env_id", ["metaworld/reach-v3", "metaworld/pick-place-v3"])
def test_scripted_expert_solves_a_few_seeds(env_id: str) -> None:
    assert expert_successes(env_id, [101, 202]) == [True, True]


@pytest.mark.slow
@pytest.mark.parametrize("env_id", METAWORLD_ENV_IDS)
def test_scripted_expert_succeeds_on_at_least_80_percent_of_seeds(env_id: str) -> None:
    # Measured over seeds 0-99: 100 % everywhere except door-open 97 % and peg-insert-side 88 %
    # (MetaWorld's own peg expert solves 41/50 of MT1's own goals: its misses are the expert's).
    outcomes = expert_successes(env_id, list(range(20)))
    print(f"{env_id}: expert success {sum(outcomes)}/{len(outcomes)}")
    assert sum(outcomes) >= 16, f"{env_id}: scripted expert succeeded on {sum(outcomes)}/20 seeds"
