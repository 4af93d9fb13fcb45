"""The policy wire protocol's vocabulary (DESIGN §6): what every part of the evaluator shares.

A leaf module: it imports nothing from this package, so `sim/` (which builds observations and
applies actions) and `miners/` (which sends and receives them) both import it and neither
imports the other for it.

- `OBSERVATION_KEYS`: the keys of Kinitro's `Observation`, which forbids any other key.
- `PolicyAction`: the env-independent form of `action.continuous.ee_twist` and `.gripper`.
- `parse_action`: what a policy may send back, checked.
- `ErrorKind`: why an episode ended early (stored in `episodes.error_kind`), and `PolicyError`,
  which carries one.

Action policy (what a policy may send back):
- `action.continuous.ee_twist`: 6 finite numbers, passed on as given (the environment clips twist
  to its action space and documents the scale).
- `action.continuous.gripper`: 1 finite number (a bare number is accepted too); a finite value
  outside [0, 1] is clipped, because rounding in a policy's output (1.0000001) should not cost an
  episode and the clipped value is what any actuator would do.
- Rejected as `bad_action`: a missing key, a wrong length, a non-number, NaN or inf anywhere, and
  any key in `continuous` other than `ee_twist` and `gripper` (a policy speaking another action
  schema would otherwise be silently half-obeyed). `discrete` and `extra` are ignored.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

OBSERVATION_KEYS: tuple[str, ...] = ("rgb", "depth", "proprio", "cam_intrinsics", "cam_extrinsics", "extra")
_CONTINUOUS_KEYS = frozenset({"ee_twist", "gripper"})


@dataclass(frozen=True)
class PolicyAction:
    ee_twist: np.ndarray  # shape (6,), float; linear part [:3] drives the end effector
    gripper: float  # [0, 1]; 1 = closed


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
            f"unknown keys in action.continuous: {sorted(unknown)}; expected only ee_twist[6] and gripper[1]",
        )
    twist = _numbers(continuous.get("ee_twist"), 6, "ee_twist")
    gripper_value = continuous.get("gripper")
    if _is_number(gripper_value):
        gripper_value = [gripper_value]
    gripper = float(_numbers(gripper_value, 1, "gripper")[0])
    return PolicyAction(ee_twist=np.array(twist, dtype=np.float64), gripper=min(max(gripper, 0.0), 1.0))


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
