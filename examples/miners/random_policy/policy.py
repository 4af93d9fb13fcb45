"""Uniformly random actions: the floor every real policy should beat.

ee_twist ~ U(-1, 1)^6, gripper ~ U(0, 1) for an arm (MetaWorld); for a robot whose proprio reports
joints (the genesis family's humanoid), joint_pos_target ~ U(-1, 1) per joint instead. The generator
is seeded at an episode's first /act from a hash of that first observation, so re-running a cycle
gives identical results.
"""

from __future__ import annotations

import hashlib
import uuid

import numpy as np
from rl_interface import Action, ActionKeys, Observation


def episode_rng(first_observation: Observation) -> np.random.Generator:
    digest = hashlib.sha256(first_observation.model_dump_json().encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


class RobotPolicy:
    def __init__(self) -> None:
        self._rng: np.random.Generator | None = None

    def is_loaded(self) -> bool:
        return True

    async def reset(self, task_config: dict) -> str:
        self._rng = None  # seeded by the episode's first observation
        return uuid.uuid4().hex

    async def act(self, observation: Observation) -> Action:
        if self._rng is None:
            self._rng = episode_rng(observation)
        joints = observation.proprio.get("joint_pos")
        if joints is not None:
            return Action(continuous={ActionKeys.JOINT_POS_TARGET: self._rng.uniform(-1.0, 1.0, len(joints)).tolist()})
        twist = self._rng.uniform(-1.0, 1.0, 6).tolist()
        gripper = [float(self._rng.uniform(0.0, 1.0))]
        return Action(continuous={ActionKeys.EE_TWIST: twist, ActionKeys.GRIPPER: gripper})

    async def cleanup(self) -> None:
        self._rng = None
