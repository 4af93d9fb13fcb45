"""Wire types of the Kinitro policy protocol, kept in the miner directory so it runs as-is.

Same field names and strictness as Kinitro's `rl_interface.py`: an observation with any other key
is rejected, empty channels are `{}`. Images are `{"data": base64(raw bytes), "shape": [h, w, 3],
"dtype": "uint8"}`.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class ActionKeys:
    EE_TWIST = "ee_twist"  # [vx, vy, vz, wx, wy, wz]; MetaWorld: [:3] is its native xyz action in [-1, 1]
    JOINT_POS_TARGET = "joint_pos_target"  # genesis/g1-v0: per joint, in [-1, 1] around the default pose
    GRIPPER = "gripper"  # [cmd] 0 = open, 1 = closed


class Observation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rgb: dict[str, dict[str, Any]] = Field(default_factory=dict)
    depth: dict[str, dict[str, Any]] = Field(default_factory=dict)
    proprio: dict[str, list[float]] = Field(default_factory=dict)
    cam_intrinsics: dict[str, list[list[float]]] = Field(default_factory=dict)
    cam_extrinsics: dict[str, list[list[float]]] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)

    def get_image(self, camera: str) -> np.ndarray | None:
        encoded = self.rgb.get(camera)
        if encoded is None:
            return None
        raw = base64.b64decode(encoded["data"])
        return np.frombuffer(raw, dtype=np.dtype(encoded["dtype"])).reshape(encoded["shape"])


class Action(BaseModel):
    model_config = ConfigDict(extra="forbid")

    continuous: dict[str, list[float]] = Field(default_factory=dict)
    discrete: dict[str, int] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)
