"""The toy family's expert: steps toward the goal its proprio shows."""

from __future__ import annotations

import uuid

from rl_interface import Action, ActionKeys, Observation


class RobotPolicy:
    def is_loaded(self) -> bool:
        return True

    async def reset(self, task_config: dict) -> str:
        return uuid.uuid4().hex

    async def act(self, observation: Observation) -> Action:
        gap = observation.proprio["goal"][0] - observation.proprio["ee_pos"][0]
        push = max(-1.0, min(1.0, gap / 0.1))
        return Action(continuous={ActionKeys.EE_TWIST: [push, 0, 0, 0, 0, 0], ActionKeys.GRIPPER: [0.0]})

    async def cleanup(self) -> None:
        pass
