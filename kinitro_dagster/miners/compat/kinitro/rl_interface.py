"""`kinitro.rl_interface`: the observation and action models of the policy protocol (DESIGN §6).

The public names of Kinitro's module, with the same JSON on the wire:

- `Observation`: exactly `rgb` and `depth` (camera -> `EncodedImage`), `proprio` (channel ->
  floats), `cam_intrinsics` / `cam_extrinsics` (camera -> matrix rows) and `extra` (anything);
  any other key is refused, as Kinitro's model refuses it.
- `Action`: `continuous` (channel -> floats), `discrete` (channel -> int), `extra` (anything).
- `ProprioKeys` / `ActionKeys`: the conventional channel names (MetaWorld uses `ee_pos`,
  `ee_quat` (x, y, z, w), `ee_vel_lin`, `ee_vel_ang`, `gripper`; actions `ee_twist`[6], `gripper`[1]).
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, Field

from .types import EncodedImage

__all__ = [
    "Action",
    "ActionKeys",
    "EncodedImage",
    "Observation",
    "ProprioKeys",
    "Step",
    "decode_image",
    "encode_image",
    "normalize_quaternion",
]


class ProprioKeys:
    """Conventional proprioceptive channel names (an environment may use others)."""

    EE_POS = "ee_pos"  # end effector position [x, y, z], m
    EE_QUAT = "ee_quat"  # its orientation [x, y, z, w]
    EE_VEL_LIN = "ee_vel_lin"  # [vx, vy, vz], m/s
    EE_VEL_ANG = "ee_vel_ang"  # [wx, wy, wz], rad/s
    GRIPPER = "gripper"  # [closure] 0 = open .. 1 = closed (or one value a finger)
    JOINT_POS = "joint_pos"
    JOINT_VEL = "joint_vel"
    JOINT_TORQUE = "joint_torque"
    BASE_POS = "base_pos"
    BASE_QUAT = "base_quat"
    BASE_HEADING = "base_heading"
    BASE_VEL = "base_vel"
    LEFT_EE_POS = "left_ee_pos"
    LEFT_EE_QUAT = "left_ee_quat"
    LEFT_GRIPPER = "left_gripper"
    RIGHT_EE_POS = "right_ee_pos"
    RIGHT_EE_QUAT = "right_ee_quat"
    RIGHT_GRIPPER = "right_gripper"
    FORCE = "force"
    TORQUE = "torque"
    IMU_ACC = "imu_acc"
    IMU_GYRO = "imu_gyro"


class ActionKeys:
    """Conventional action channel names."""

    EE_TWIST = "ee_twist"  # [vx, vy, vz, wx, wy, wz]; on MetaWorld the linear part moves the hand
    EE_POS_TARGET = "ee_pos_target"
    GRIPPER = "gripper"  # [command] 0 = open .. 1 = closed
    JOINT_VEL = "joint_vel"
    JOINT_POS_TARGET = "joint_pos_target"
    BASE_VEL = "base_vel"
    LEFT_TWIST = "left_twist"
    LEFT_GRIPPER = "left_gripper"
    RIGHT_TWIST = "right_twist"
    RIGHT_GRIPPER = "right_gripper"


def encode_image(img: np.ndarray) -> EncodedImage:
    """An array as the wire carries it: base64 of its C-order bytes, its shape and dtype."""
    array = np.asarray(img)
    return {
        "data": base64.b64encode(array.tobytes()).decode("ascii"),
        "shape": [int(n) for n in array.shape],
        "dtype": str(array.dtype),  # "uint8", "float32"
    }


def decode_image(encoded: EncodedImage) -> np.ndarray:
    """The array an `EncodedImage` carries (read-only: it shares the decoded bytes)."""
    raw = base64.b64decode(encoded["data"])
    return np.frombuffer(raw, dtype=np.dtype(encoded["dtype"])).reshape(tuple(encoded["shape"]))


def _concat(channels: dict[str, list[float]], keys: list[str] | None) -> np.ndarray:
    names = sorted(channels) if keys is None else [k for k in keys if k in channels]
    if not names:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([np.asarray(channels[k], dtype=np.float32).ravel() for k in names])


class Observation(BaseModel):
    """What a policy sees each step (the body of `POST /act` is `{"obs": Observation}`)."""

    model_config = ConfigDict(extra="forbid")

    rgb: dict[str, EncodedImage] = Field(default_factory=dict)
    depth: dict[str, EncodedImage] = Field(default_factory=dict)
    proprio: dict[str, list[float]] = Field(default_factory=dict)
    cam_intrinsics: dict[str, list[list[float]]] = Field(default_factory=dict)
    cam_extrinsics: dict[str, list[list[float]]] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)

    def get_image(self, camera: str) -> np.ndarray | None:
        """Camera `camera`'s RGB frame (H, W, 3), or None if it sent none."""
        return decode_image(self.rgb[camera]) if camera in self.rgb else None

    def get_depth(self, camera: str) -> np.ndarray | None:
        return decode_image(self.depth[camera]) if camera in self.depth else None

    @property
    def images(self) -> dict[str, np.ndarray]:
        """Every RGB frame, by camera."""
        return {camera: decode_image(image) for camera, image in self.rgb.items()}

    def get_proprio(self, key: str) -> np.ndarray | None:
        return np.asarray(self.proprio[key], dtype=np.float32) if key in self.proprio else None

    def proprio_array(self, keys: list[str] | None = None) -> np.ndarray:
        """The channels `keys` (default: all, in alphabetical order) end to end, float32."""
        return _concat(self.proprio, keys)

    def to_payload(self, include_images: bool = True) -> dict[str, Any]:
        """The JSON-ready dict; `include_images=False` leaves `rgb` and `depth` empty."""
        payload = self.model_dump(mode="python")
        if not include_images:
            payload["rgb"], payload["depth"] = {}, {}
        return payload


class Action(BaseModel):
    """What a policy answers (`{"action": Action}`)."""

    model_config = ConfigDict(extra="forbid")

    continuous: dict[str, list[float]] = Field(default_factory=dict)
    discrete: dict[str, int] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)

    def get_continuous(self, key: str) -> np.ndarray | None:
        return np.asarray(self.continuous[key], dtype=np.float32) if key in self.continuous else None

    def continuous_array(self, keys: list[str] | None = None) -> np.ndarray:
        """The continuous channels `keys` (default: all, alphabetical) end to end, float32."""
        return _concat(self.continuous, keys)

    def to_array(self, keys: list[str] | None = None) -> np.ndarray:
        return self.continuous_array(keys)

    @classmethod
    def from_array(cls, array: ArrayLike, schema: dict[str, int]) -> Action:
        """Split a flat array into channels: `schema` maps names to sizes, in order, e.g.
        `{"ee_twist": 6, "gripper": 1}`."""
        flat = np.asarray(array, dtype=np.float32).ravel()
        continuous: dict[str, list[float]] = {}
        start = 0
        for key, size in schema.items():
            continuous[key] = flat[start : start + size].tolist()
            start += size
        return cls(continuous=continuous)


def normalize_quaternion(quat: np.ndarray) -> np.ndarray:
    """`quat` scaled to unit length (float32); the identity [0, 0, 0, 1] for a zero quaternion."""
    q = np.asarray(quat, dtype=np.float64)
    norm = float(np.linalg.norm(q))
    if not norm > 0:
        return np.array([0.0, 0.0, 0.0, 1.0], dtype=np.float32)
    return (q / norm).astype(np.float32)


class Step(BaseModel):
    """One step of a trajectory."""

    model_config = ConfigDict(extra="forbid")

    obs: Observation
    action: Action
