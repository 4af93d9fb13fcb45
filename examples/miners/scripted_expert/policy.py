"""MetaWorld's own scripted expert, driven by the privileged 39-d state in `obs.extra["state"]`.

Needs an evaluator that sends the state (the demo track: `kinitro env test --privileged`). The
expert's native action [x, y, z, grip] in [-1, 1] becomes ee_twist = [x, y, z, 0, 0, 0] and
gripper = (grip + 1) / 2, the inverse of the evaluator's MetaWorld action mapping.
"""

from __future__ import annotations

import uuid
import warnings

import numpy as np
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


class RobotPolicy:
    def __init__(self) -> None:
        self._expert = None
        self._episode_id: str | None = None

    def is_loaded(self) -> bool:
        return True

    async def reset(self, task_config: dict) -> str:
        self._expert = expert_for(task_config)
        self._episode_id = uuid.uuid4().hex
        return self._episode_id

    async def act(self, observation: Observation) -> Action:
        if self._expert is None:
            raise RuntimeError("act before reset: POST /reset with the task_config first")
        return to_action(expert_action(self._expert, observation))

    async def cleanup(self) -> None:
        self._expert = None
