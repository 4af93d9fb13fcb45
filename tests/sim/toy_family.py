"""A toy env family, registered the way any new family is: one module and one registry entry.

`toy/line-v0`: a point on a line must reach a goal. The episode seed places both; an action's
`ee_twist[0]` moves the point (clipped to ±0.1 a step); success within 0.05 of the goal. The goal
is in the proprio, so a policy that reads it solves every episode and a random one rarely does.
Deliberately trivial: what is tested is that the house (registry, make_env, partitions, the
asset, scoring) takes a family it has never seen without any edit outside its entry.
"""

from __future__ import annotations

import numpy as np

from kinitro_dagster.protocol import PolicyAction
from kinitro_dagster.sim.base import EnvConfig, StepResult
from kinitro_dagster.sim.registry import EnvFamily

FAMILY = EnvFamily(
    name="toy",
    entry_point="tests.sim.toy_family:LineEnv",
    tasks={"toy/line-v0": "line"},
    modules=("numpy",),
    image="kinitro/toy:test",
    max_concurrent_runs=1,
)

_STEP = 0.1
_REACHED = 0.05


class LineEnv:
    def __init__(self, env_id: str, config: EnvConfig | None = None) -> None:
        self.env_id = env_id
        self.config = config or EnvConfig()
        self._position = self._goal = 0.0
        self._steps = 0
        self._success = False

    def reset(self, seed: int) -> dict:
        rng = np.random.default_rng(seed)
        self._position, self._goal = (float(x) for x in rng.uniform(-1.0, 1.0, 2))
        self._steps, self._success = 0, False
        return self._observation()

    def step(self, action: PolicyAction) -> StepResult:
        self._position += float(np.clip(action.ee_twist[0], -1.0, 1.0)) * _STEP
        self._steps += 1
        distance = abs(self._position - self._goal)
        self._success = self._success or distance < _REACHED
        return StepResult(observation=self._observation(), reward=-distance, success=self._success,
                          done=self._steps >= self.config.max_steps)  # fmt: skip

    def task_config(self) -> dict:
        return {"env_id": self.env_id, "env_name": "toy", "task_name": "line", "task_id": 0}

    def close(self) -> None:
        pass

    def _observation(self) -> dict:
        return {"rgb": {}, "depth": {}, "proprio": {"ee_pos": [self._position, 0.0, 0.0], "goal": [self._goal]},
                "cam_intrinsics": {}, "cam_extrinsics": {}, "extra": {}}  # fmt: skip
