"""The policy wire protocol's vocabulary (DESIGN §6): what every part of the evaluator shares.

A leaf module: it imports nothing from this package, so `sim/` (which builds observations and
applies actions) and `miners/` (which sends and receives them) both import it and neither
imports the other for it.

- `OBSERVATION_KEYS`: the keys of Kinitro's `Observation`, which forbids any other key.
- `PolicyAction`: the env-independent form of an action: `action.continuous.ee_twist` and `.gripper`
  (MetaWorld's arm), or `.joint_pos_target` (the genesis family's humanoid).
- `parse_action`: what a policy may send back, checked.
- `encode_image`: an image or depth map as Kinitro's `EncodedImage` (raw bytes, shape, dtype name).
- `ObservationRequest` / `observation_request`: what a policy's `/health` says it reads (below).
- `ErrorKind`: why an episode ended early (stored in `episodes.error_kind`), and `PolicyError`,
  which carries one.

Action policy (what a policy may send back): either the end-effector channels or joint targets.
- `action.continuous.joint_pos_target`: finite numbers, one a joint in [-1, 1] around the robot's
  default pose (the env maps and clips them); as Kinitro, a shorter list is padded with zeros and a
  longer one cut at `JOINT_TARGET_LIMIT`. It may not come with `ee_twist` or `gripper`.
- `action.continuous.ee_twist`: 6 finite numbers, passed on as given (the environment clips twist
  to its action space and documents the scale).
- `action.continuous.gripper`: 1 finite number (a bare number is accepted too); a finite value
  outside [0, 1] is clipped, because rounding in a policy's output (1.0000001) should not cost an
  episode and the clipped value is what any actuator would do.
- Rejected as `bad_action`: a missing key, a wrong length, a non-number, NaN or inf anywhere, and
  any key in `continuous` other than these three (a policy speaking another action schema would
  otherwise be silently half-obeyed). `discrete` and `extra` are ignored. An env given the other
  schema's action refuses it (`bad_action`, naming what it takes).

Observation negotiation (what a policy may declare it reads): `/health` may answer with
`"observation": {"cameras": [names], "depth": bool}`. The evaluator then renders and sends only
those of the env's cameras (none for `[]`: a proprio-only policy) and depth maps only when `depth`
is true, so it spends no frames nobody reads. A policy that declares nothing, or `cameras: null`,
gets every camera and depth map the env renders, as Kinitro's miners do. Any policy may ask for
any camera, so the choice is the miner's and fair by construction. A declaration that is not of
this shape is logged and read as no declaration (the policy gets everything, never less).
"""

from __future__ import annotations

import base64
import enum
import math
from dataclasses import dataclass

import numpy as np

OBSERVATION_KEYS: tuple[str, ...] = ("rgb", "depth", "proprio", "cam_intrinsics", "cam_extrinsics", "extra")
_CONTINUOUS_KEYS = frozenset({"ee_twist", "gripper", "joint_pos_target"})
JOINT_TARGET_LIMIT = 64  # the longest joint_pos_target read (a humanoid has 43 actuated joints)


@dataclass(frozen=True)
class PolicyAction:
    ee_twist: np.ndarray | None = None  # shape (6,), float; linear part [:3] drives the end effector
    gripper: float = 0.0  # [0, 1]; 1 = closed
    joint_pos_target: np.ndarray | None = None  # per joint, [-1, 1] around the default pose


@dataclass(frozen=True)
class ObservationRequest:
    """The observation channels a policy reads (module docstring, "Observation negotiation")."""

    cameras: tuple[str, ...] | None = None  # None: every camera the env renders
    depth: bool = True


def observation_request(health: dict) -> ObservationRequest | None:
    """The policy's declaration in its `/health` answer; None when it declares nothing.

    `ValueError` (naming the problem) for a declaration of another shape: the caller logs it and
    treats the policy as declaring nothing.
    """
    declared = health.get("observation")
    if declared is None:
        return None
    if not isinstance(declared, dict):
        raise ValueError(f"/health observation must be an object, got {type(declared).__name__}")
    cameras = declared.get("cameras")
    if cameras is not None and not (isinstance(cameras, list) and all(isinstance(c, str) for c in cameras)):
        raise ValueError(f"/health observation.cameras must be a list of camera names or null, got {cameras!r}")
    depth = declared.get("depth", True)
    if not isinstance(depth, bool):
        raise ValueError(f"/health observation.depth must be true or false, got {depth!r}")
    return ObservationRequest(cameras=None if cameras is None else tuple(cameras), depth=depth)


class ErrorKind(enum.StrEnum):
    """Why an episode ended early; stored in `episodes.error_kind`."""

    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"  # refused, reset or closed by the server
    HTTP_ERROR = "http_error"  # non-2xx status
    INVALID_JSON = "invalid_json"
    BAD_ACTION = "bad_action"  # missing keys, wrong shapes, non-finite values, unknown keys
    RESPONSE_TOO_LARGE = "response_too_large"
    CRASHED = "crashed"  # the policy server process is gone
    EVALUATOR_ERROR = "evaluator_error"  # our side failed (env error, worker crash): not the miner's fault
    # The policy never served: its snapshot could not be fetched, its runtime built or its server started.
    DEPLOYMENT_FAILED = "deployment_failed"


class PolicyError(Exception):
    """A policy misbehaved or could not be reached. `kind` is an `ErrorKind` value."""

    def __init__(self, kind: ErrorKind | str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = ErrorKind(kind)
        self.message = message


def encode_image(array: np.ndarray) -> dict:
    """Kinitro's `EncodedImage`: base64 of the raw C-order bytes, the shape, numpy's dtype name ("uint8")."""
    return {"data": base64.b64encode(array.tobytes()).decode("ascii"), "shape": list(array.shape),
            "dtype": str(array.dtype)}  # fmt: skip


def parse_action(payload: object) -> PolicyAction:
    """Validate an `/act` response body (see the module docstring for what is accepted)."""
    action = payload.get("action") if isinstance(payload, dict) else None
    continuous = action.get("continuous") if isinstance(action, dict) else None
    if not isinstance(continuous, dict):
        raise PolicyError(ErrorKind.BAD_ACTION, "response has no action.continuous object")
    unknown = continuous.keys() - _CONTINUOUS_KEYS
    if unknown:
        raise PolicyError(
            ErrorKind.BAD_ACTION,
            f"unknown keys in action.continuous: {sorted(unknown)}; expected ee_twist[6] and gripper[1], "
            "or joint_pos_target",
        )
    if "joint_pos_target" in continuous:
        return _joint_action(continuous)
    twist = _numbers(continuous.get("ee_twist"), 6, "ee_twist")
    gripper_value = continuous.get("gripper")
    if _is_number(gripper_value):
        gripper_value = [gripper_value]
    gripper = float(_numbers(gripper_value, 1, "gripper")[0])
    return PolicyAction(ee_twist=np.array(twist, dtype=np.float64), gripper=min(max(gripper, 0.0), 1.0))


def _joint_action(continuous: dict) -> PolicyAction:
    if len(continuous) > 1:
        raise PolicyError(ErrorKind.BAD_ACTION, "action.continuous.joint_pos_target cannot come with "
                                                f"{sorted(continuous.keys() - {'joint_pos_target'})}")  # fmt: skip
    value = continuous["joint_pos_target"]
    if type(value) is not list or not value:
        raise PolicyError(ErrorKind.BAD_ACTION, "action.continuous.joint_pos_target must be a list of numbers")
    value = value[:JOINT_TARGET_LIMIT]
    return PolicyAction(joint_pos_target=np.array(_numbers(value, len(value), "joint_pos_target"), dtype=np.float64))


def _is_number(value: object) -> bool:
    return type(value) in _NUMBER_TYPES  # JSON numbers decode to exactly int or float; bool is excluded


_NUMBER_TYPES = frozenset({int, float})


def _numbers(value: object, length: int, name: str) -> list[float]:
    """`value` if it is a list of `length` finite numbers; otherwise a bad_action saying why."""
    if type(value) is not list or len(value) != length:
        shape = f"list of {len(value)}" if isinstance(value, list) else type(value).__name__
        raise PolicyError(ErrorKind.BAD_ACTION, f"action.continuous.{name} must be {length} numbers, got {shape}")
    # Fast path first (this runs on every step); the loops below only name the offender.
    if not set(map(type, value)) <= _NUMBER_TYPES:
        item = next(item for item in value if not _is_number(item))
        raise PolicyError(ErrorKind.BAD_ACTION, f"action.continuous.{name} holds a non-number {item!r}")
    try:
        if all(map(math.isfinite, value)):
            return value
    except OverflowError:  # an integer beyond float range
        pass
    raise PolicyError(ErrorKind.BAD_ACTION, f"action.continuous.{name} holds a non-finite value: {value!r}")
