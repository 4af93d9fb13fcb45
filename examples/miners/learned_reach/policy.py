"""A learned reach policy: a small torch network on what production miners see, cameras + proprio.

It holds still for an episode's first step; at the second `/act` the network looks at both corner
cameras (84x84 RGB) and estimates where the goal is; from then on it maps that estimate and
`proprio.ee_pos` to MetaWorld's native action. Why wait a step: when it was trained, the
observation right after reset drew the goal's marker where the previous episode had it (MetaWorld
moves the marker into place only when it steps; the evaluator now places it before the first
frame, so the wait costs one step and nothing else). It
never reads `extra["state"]` (privileged state is off in production). The weights (`reach_net.pt`,
479 KiB) ship in the snapshot; `train.py` makes them by behaviour cloning of MetaWorld's scripted
expert on `metaworld/reach-v3` (README.md beside this file).

Trained on reach only: it plays any task it is given as a reach for what it takes to be the goal.
Deterministic: the same episode gets the same actions.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import torch
from model import CAMERAS, ReachNet, camera_frames
from rl_interface import Action, ActionKeys, Observation

# Not resolve(): in a hub snapshot each file is a link into the cache's blobs/, where names are hashes.
WEIGHTS = Path(__file__).absolute().parent / "reach_net.pt"

torch.set_num_threads(1)  # one core per policy container; small tensors gain nothing from more


class RobotPolicy:
    def __init__(self) -> None:
        self._model = ReachNet()
        self._model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
        self._model.eval()
        self._goal: torch.Tensor | None = None  # this episode's goal estimate (normalized)
        self._steps = 0

    def is_loaded(self) -> bool:
        return True

    async def reset(self, task_config: dict) -> str:
        self._goal = None  # estimated from the episode's second observation
        self._steps = 0
        return uuid.uuid4().hex

    async def act(self, observation: Observation) -> Action:
        missing = [name for name in CAMERAS if name not in observation.rgb]
        if missing:
            raise ValueError(f"this policy needs the camera frames {list(CAMERAS)}; missing {missing}")
        self._steps += 1
        if self._steps == 1:  # hold still: this frame's goal marker is stale (module docstring)
            return Action(continuous={ActionKeys.EE_TWIST: [0.0] * 6, ActionKeys.GRIPPER: [0.0]})
        with torch.inference_mode():
            if self._goal is None:
                frames = camera_frames({name: observation.get_image(name) for name in CAMERAS})
                self._goal = self._model.goal(torch.from_numpy(frames[None]))
            ee_pos = torch.tensor([observation.proprio["ee_pos"]], dtype=torch.float32)
            x, y, z, grip = self._model.act(self._goal, ee_pos)[0].tolist()
        if not np.isfinite([x, y, z, grip]).all():
            raise ValueError("the network produced a non-finite action")
        return Action(continuous={ActionKeys.EE_TWIST: [x, y, z, 0.0, 0.0, 0.0],
                                  ActionKeys.GRIPPER: [(grip + 1.0) / 2.0]})  # fmt: skip

    async def cleanup(self) -> None:
        self._goal = None
