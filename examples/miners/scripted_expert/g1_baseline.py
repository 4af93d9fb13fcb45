"""A scripted baseline for `genesis/g1-v0`: the G1 balances on its landing, then falls towards the target.

Walking is out of reach of a scripted controller under Kinitro's action mapping: targets are
`DEFAULT_POSE + a * ACTION_SCALE` with `a` in [-1, 1], so the right knee can bend at most 0.1 rad,
the hip pitches 0.2-0.4 rad and the ankle pitches 0.2 rad. What it can do, and what this does:
- **Stand.** After the spawn drop it holds a straight-kneed stance and keeps its pitch level with
  the ankles (a PD loop on the base's pitch and pitch rate); untouched it would fall within 2 s.
- **Fall on purpose.** Kinitro's navigate predicate counts the step the pelvis drops below 0.3 m,
  by then ~0.8-1.1 m from the feet. `MOVES` are joint programs whose landing point (measured on
  this env, robot frame at the move's start) is in `LANDINGS`; the policy picks the move landing
  nearest the navigate target and plays it when that lands within `REACH` of it. Otherwise it
  keeps standing until the episode ends.
Pickup, place and push need hands and steps: it stands through them. It reads the target from the
privileged state (`obs.extra["state"]["target_spawn"]`, the demo track), so it is a demo baseline,
not a production miner.
"""

from __future__ import annotations

import math

import numpy as np

# Kinitro's wire order of joint_pos / joint_pos_target (genesis/g1-v0), legs and waist first.
WIRE_JOINTS = (
    "left_hip_pitch", "right_hip_pitch", "waist_yaw", "left_hip_roll", "right_hip_roll", "waist_roll",
    "left_hip_yaw", "right_hip_yaw", "waist_pitch", "left_knee", "right_knee", "left_shoulder_pitch",
    "right_shoulder_pitch", "left_ankle_pitch", "right_ankle_pitch", "left_shoulder_roll",
    "right_shoulder_roll", "left_ankle_roll", "right_ankle_roll", "left_shoulder_yaw", "right_shoulder_yaw",
    "left_elbow", "right_elbow", "left_wrist_roll", "right_wrist_roll", "left_wrist_pitch",
    "right_wrist_pitch", "left_wrist_yaw", "right_wrist_yaw", "left_hand_thumb_0", "left_hand_middle_0",
    "left_hand_index_0", "right_hand_thumb_0", "right_hand_middle_0", "right_hand_index_0",
    "left_hand_thumb_1", "left_hand_middle_1", "left_hand_index_1", "right_hand_thumb_1",
    "right_hand_middle_1", "right_hand_index_1", "left_hand_thumb_2", "right_hand_thumb_2",
)  # fmt: skip
JOINT = {name: index for index, name in enumerate(WIRE_JOINTS)}
# Kinitro's default pose and action scale, element-wise over the wire order (as Kinitro applies them).
_LEG_POSE = (-0.1, 0.0, 0.0, 0.3, -0.2, 0.0)
DEFAULT_POSE = np.array([*_LEG_POSE, *_LEG_POSE, 0.0, 0.0, 0.0, 0.0, 0.2, 0.0, -0.3, 0.0, 0.0, 0.0,
                         0.0, -0.2, 0.0, -0.3, 0.0, 0.0, 0.0, *([0.0] * 14)])  # fmt: skip
_LEG_SCALE = (0.3, 0.2, 0.2, 0.4, 0.3, 0.2)
ACTION_SCALE = np.array([*_LEG_SCALE, *_LEG_SCALE, 0.3, 0.2, 0.2, *([0.5] * 14), *([0.8] * 14)])

STANCE = {"left_knee": 0.1, "right_knee": 0.05}  # every other joint at 0 rad: straight and symmetric
PITCH_GAIN, PITCH_RATE_GAIN = 1.0, 0.05  # ankle pitch (rad) per rad of base pitch, per rad/s
SETTLE_STEPS = 60  # the drop and landing are over by then (1.2 s at 50 Hz)
REACH = 0.45  # play a move only if it lands this close to the target (Kinitro's radius: 0.5 m)


def _lean(heading: float):
    """Ankles and hips tipped towards `heading` (robot frame, rad): falls forward or backward, up
    to ~30° off the axis."""

    def targets(q: np.ndarray, _: int) -> None:
        for side in ("left", "right"):
            q[JOINT[f"{side}_ankle_pitch"]] = -0.3 * math.cos(heading)
            q[JOINT[f"{side}_ankle_roll"]] = -0.6 * math.sin(heading)
            q[JOINT[f"{side}_hip_roll"]] = -0.6 * math.sin(heading)

    return targets


def _topple_left(ankle_pitch: float | None):
    """Right leg abducted, left ankle rolled: the weight goes over the left foot's outer edge. A fixed
    ankle pitch instead of the balance loop (None) tips the fall forward or back; the fall is
    bistable: a few hundredths of a radian decide."""

    def targets(q: np.ndarray, _: int) -> None:
        q[JOINT["left_hip_roll"]], q[JOINT["right_hip_roll"]] = -0.1, -0.5
        q[JOINT["left_ankle_roll"]] = 0.5
        if ankle_pitch is not None:
            q[JOINT["left_ankle_pitch"]] = q[JOINT["right_ankle_pitch"]] = ankle_pitch

    return targets


def _topple_right(ankle_pitch: float | None, prop_steps: int = 30):
    """The left leg abducted shifts the weight onto the right foot, where it props the robot up like
    a kickstand; pulling it in after `prop_steps` lets the robot fall over the right foot's edge."""

    def targets(q: np.ndarray, step: int) -> None:
        q[JOINT["left_hip_roll"]] = 0.7 if step < prop_steps else -0.1
        q[JOINT["right_hip_roll"]], q[JOINT["right_ankle_roll"]] = 0.1, -0.5
        if ankle_pitch is not None:
            q[JOINT["left_ankle_pitch"]] = q[JOINT["right_ankle_pitch"]] = ankle_pitch

    return targets


def _lift_left(stance_roll: float):
    """Stand on the right foot (left knee and hip flexed): falls to the left and back."""

    def targets(q: np.ndarray, _: int) -> None:
        q[JOINT["left_knee"]], q[JOINT["left_hip_pitch"]] = 0.7, -0.4
        if stance_roll:
            q[JOINT["right_ankle_roll"]] = q[JOINT["right_hip_roll"]] = stance_roll

    return targets


MOVES = {
    **{f"lean_{deg}": _lean(math.radians(deg)) for deg in (0, 22, 45, 67, 112, 135, 157, 180, 202, 225, 247,
                                                             292, 315, 337)},
    "topple_left": _topple_left(None),
    **{f"topple_left_{tip}": _topple_left(tip / 1000) for tip in (-35, 0, 20)},
    "topple_right": _topple_right(None),
    **{f"topple_right_{tip}": _topple_right(tip / 1000) for tip in (-50, -35, 0, 20)},
    "lift_left": _lift_left(0.0),
    "lift_left_roll": _lift_left(-0.5),
}  # fmt: skip
# Where each move puts the pelvis when it drops below 0.3 m: (x, y) in metres in the robot frame at
# the move's start (measured on genesis/g1-v0 by calibrate(), seed 0, one run; the landing is the
# same for every seed, whose scenes differ only in the objects).
LANDINGS: dict[str, tuple[float, float]] = {
    "lean_0": (0.895, -0.025), "lean_22": (0.875, 0.360), "lean_45": (0.928, 0.362), "lean_67": (0.931, 0.380),
    "lean_112": (-0.856, 0.325), "lean_135": (-0.798, 0.416), "lean_157": (-0.800, 0.222),
    "lean_180": (-0.780, 0.010), "lean_202": (-0.787, -0.289), "lean_225": (-0.808, -0.397),
    "lean_247": (-0.866, -0.418), "lean_292": (0.932, -0.382), "lean_315": (0.916, -0.416),
    "lean_337": (0.888, -0.361), "topple_left": (-0.202, 1.080), "topple_left_-35": (0.825, 0.673),
    "topple_left_0": (-0.627, 0.877), "topple_left_20": (-0.796, 0.630), "topple_right": (-0.137, -1.240),
    "topple_right_-50": (0.455, -1.197), "topple_right_-35": (0.015, -1.273),
    "topple_right_0": (-0.262, -1.248), "topple_right_20": (-0.805, -0.730), "lift_left": (-0.357, 0.694),
    "lift_left_roll": (-0.734, 0.373),
}  # fmt: skip


def rpy(quat_wxyz: list[float]) -> tuple[float, float, float]:
    w, x, y, z = quat_wxyz
    roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x))))
    yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return roll, pitch, yaw


def choose_move(base_xy: tuple[float, float], yaw: float, goal_xy: tuple[float, float]) -> str | None:
    """The move landing nearest `goal_xy` (world frame), if within REACH of it."""
    dx, dy = goal_xy[0] - base_xy[0], goal_xy[1] - base_xy[1]
    c, s = math.cos(yaw), math.sin(yaw)
    local = (c * dx + s * dy, -s * dx + c * dy)
    best, best_miss = None, REACH
    for name, (lx, ly) in LANDINGS.items():
        miss = math.hypot(local[0] - lx, local[1] - ly)
        if miss < best_miss:
            best, best_miss = name, miss
    return best


class G1Baseline:
    """One episode's controller: `act(proprio, extra)` -> joint_pos_target (43 floats in [-1, 1])."""

    def __init__(self, forced_move: str | None = None) -> None:
        self.steps = 0
        self.move: str | None = None
        self._move_start = 0
        self._forced = forced_move

    def act(self, proprio: dict, extra: dict) -> list[float]:
        _, pitch, yaw = rpy(proprio["base_quat"])
        wx, wy = proprio["base_vel"][3], proprio["base_vel"][4]
        pitch_rate = -math.sin(yaw) * wx + math.cos(yaw) * wy
        if self.steps == SETTLE_STEPS and self.move is None:
            self.move = self._forced or self._choose(proprio, yaw, extra)
            self._move_start = self.steps
        q = np.zeros(len(WIRE_JOINTS))
        for name, value in STANCE.items():
            q[JOINT[name]] = value
        ankle = PITCH_GAIN * pitch + PITCH_RATE_GAIN * pitch_rate
        q[JOINT["left_ankle_pitch"]] = q[JOINT["right_ankle_pitch"]] = ankle
        if self.move is not None:
            MOVES[self.move](q, self.steps - self._move_start)
        self.steps += 1
        return np.clip((q - DEFAULT_POSE) / ACTION_SCALE, -1.0, 1.0).tolist()

    def _choose(self, proprio: dict, yaw: float, extra: dict) -> str | None:
        if extra.get("task_type") != "navigate":
            return None
        state = extra.get("state")
        if not state:
            raise ValueError("the G1 baseline needs obs.extra['state']: run the env with privileged state")
        base = proprio["base_pos"]
        return choose_move((base[0], base[1]), yaw, tuple(state["target_spawn"][:2]))
