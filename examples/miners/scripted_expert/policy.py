"""Scripted experts for both families, driven by the privileged state in `obs.extra["state"]`.

MetaWorld: MetaWorld's own scripted expert for the task, on its 39-d state. Its native action
[x, y, z, grip] in [-1, 1] becomes ee_twist = [x, y, z, 0, 0, 0] and gripper = (grip + 1) / 2, the
inverse of the evaluator's MetaWorld action mapping. `genesis/g1-v0`: the G1 baseline in
`g1_baseline.py` (stand, then fall towards a navigate target it can reach).

Needs an evaluator that sends the state (the demo track: `kinitro env test --privileged`).
"""

from __future__ import annotations

import uuid
import warnings

import numpy as np
from g1_baseline import G1Baseline
from metaworld.policies import ENV_POLICY_MAP
from rl_interface import Action, ActionKeys, Observation

# The experts warn on every step whose raw action exceeds [-1, 1]; it is clipped below.
warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")


# Kinitro's ids of the MetaWorld tasks whose name differs; every other id ends in its task's name
# (as do the ids older evaluators sent: `metaworld/button-press-topdown-v3`). Not a string trick
# for these two: MetaWorld's `button-press-v3` is another task (pressing the button from the side).
TASK_NAME_OF_ENV_ID = {
    "metaworld/button-press-v3": "button-press-topdown-v3",
    "metaworld/peg-insert-v3": "peg-insert-side-v3",
}


def task_name(task_config: dict) -> str:
    """`task_name` is MetaWorld's name (`pick-place-v3`); older evaluators only send `env_id`."""
    if task_config.get("task_name"):
        return task_config["task_name"]
    env_id = task_config.get("env_id") or ""
    return TASK_NAME_OF_ENV_ID.get(env_id) or env_id.rpartition("/")[2]


def expert_for(task_config: dict):
    name = task_name(task_config)
    if name not in ENV_POLICY_MAP:
        raise ValueError(f"no MetaWorld scripted expert for task {name!r} (task_config={task_config})")
    return ENV_POLICY_MAP[name]()


def expert_action(expert, observation: Observation) -> np.ndarray:
    state = observation.extra.get("state")
    if state is None:
        raise ValueError("the scripted expert needs obs.extra['state']: run the env with privileged state")
    return np.clip(expert.get_action(np.asarray(state, dtype=np.float64)), -1.0, 1.0)


def to_action(native: np.ndarray) -> Action:
    twist = [float(native[0]), float(native[1]), float(native[2]), 0.0, 0.0, 0.0]
    return Action(continuous={ActionKeys.EE_TWIST: twist, ActionKeys.GRIPPER: [float((native[3] + 1) / 2)]})


def is_humanoid(task_config: dict) -> bool:
    return (task_config.get("env_id") or "").startswith("genesis/")


class RobotPolicy:
    def __init__(self) -> None:
        self._expert = None
        self._episode_id: str | None = None

    def is_loaded(self) -> bool:
        return True

    async def reset(self, task_config: dict) -> str:
        self._expert = G1Baseline() if is_humanoid(task_config) else expert_for(task_config)
        self._episode_id = uuid.uuid4().hex
        return self._episode_id

    async def act(self, observation: Observation) -> Action:
        if self._expert is None:
            raise RuntimeError("act before reset: POST /reset with the task_config first")
        if isinstance(self._expert, G1Baseline):
            targets = self._expert.act(observation.proprio, observation.extra)
            return Action(continuous={ActionKeys.JOINT_POS_TARGET: targets})
        return to_action(expert_action(self._expert, observation))

    async def cleanup(self) -> None:
        self._expert = None
