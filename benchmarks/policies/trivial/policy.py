"""The cheapest possible policy: hold still. Measures the protocol's cost, not a model's."""

from __future__ import annotations

import uuid

from rl_interface import Action, Observation


class RobotPolicy:
    def __init__(self) -> None:
        self._episode_id: str | None = None

    def is_loaded(self) -> bool:
        return True

    async def reset(self, task_config: dict) -> str:
        self._episode_id = uuid.uuid4().hex
        return self._episode_id

    async def act(self, observation: Observation) -> Action:
        return Action(continuous={"ee_twist": [0.0] * 6, "gripper": [0.0]})

    async def cleanup(self) -> None:
        pass
