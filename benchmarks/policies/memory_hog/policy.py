"""A policy that plays zero actions, then allocates past any sane memory limit (the fault
campaign's OOM victim): from its 20th /act it fills 4 GiB, page by page, so the kernel's OOM
killer ends it inside its container's limit (KINITRO_EXECUTOR_MINER_DEPLOYMENT_MEMORY)."""

from __future__ import annotations

import uuid

import numpy as np
from rl_interface import Action, ActionKeys, Observation

HOG_AFTER_ACTS = 20
HOG_BYTES = 4 << 30


class RobotPolicy:
    def __init__(self) -> None:
        self._acts = 0
        self._hoard: list[np.ndarray] = []

    def is_loaded(self) -> bool:
        return True

    async def reset(self, task_config: dict) -> str:
        return uuid.uuid4().hex

    async def act(self, observation: Observation) -> Action:
        self._acts += 1
        if self._acts >= HOG_AFTER_ACTS:
            self._hoard.append(np.ones(HOG_BYTES, dtype=np.uint8))  # np.ones writes every page
        return Action(continuous={ActionKeys.EE_TWIST: [0.0] * 6, ActionKeys.GRIPPER: [0.0]})

    async def cleanup(self) -> None:
        self._hoard.clear()
