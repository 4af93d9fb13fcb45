"""Exact fast paths for the Python that MetaWorld runs on every env step.

MuJoCo's physics is under half of a stock MetaWorld step here (~75 of ~230 µs). The rest is
Python, and a few calls dominate it: SciPy's `Rotation.from_matrix(...).as_quat()` for the object's
orientation (~35 µs of array-API dispatch for one 3x3 matrix, ~70 µs within a step), and MuJoCo's
by-name accessors (`data.site("rightEndEffector")`, a few µs each, several a step).

`accelerate(env)` gives one env instance a subclass that overrides those calls with versions that
return bit-identical values: the same floating-point operations in the same order, or the same
array views by id instead of by name. Anything the fast quaternion cannot prove it matches (a
matrix that is not a clean rotation, where SciPy would orthogonalize it first) goes to SciPy.
tests/sim/test_metaworld_fast.py checks full episodes of every env against stock MetaWorld,
observation, reward and info, to the bit.

Only the instance is changed: MetaWorld's classes, and any other env in the process, stay stock.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import mujoco
import numpy as np
from metaworld.envs.sawyer_door_v3 import SawyerDoorEnvV3
from metaworld.envs.sawyer_peg_insertion_side_v3 import SawyerPegInsertionSideEnvV3
from metaworld.envs.sawyer_pick_place_v3 import SawyerPickPlaceEnvV3
from metaworld.envs.sawyer_push_v3 import SawyerPushEnvV3
from metaworld.envs.sawyer_reach_v3 import SawyerReachEnvV3
from metaworld.sawyer_xyz_env import SawyerXYZEnv
from scipy.spatial.transform import Rotation

# Envs whose `_get_quat_objects` is `Rotation.from_matrix(<xmat of this element>).as_quat()`.
_QUAT_FROM_XMAT: dict[type, tuple[str, str]] = {
    SawyerReachEnvV3: ("geom", "objGeom"),
    SawyerPushEnvV3: ("geom", "objGeom"),
    SawyerPickPlaceEnvV3: ("geom", "objGeom"),
    SawyerDoorEnvV3: ("geom", "handle"),
    SawyerPegInsertionSideEnvV3: ("site", "pegGrasp"),
}

# SciPy treats a matrix as a rotation when M @ M.T is within atol 1e-12 (off the diagonal) and
# atol 1e-12 + rtol 1e-5 (on it) of the identity; otherwise it orthogonalizes by SVD first. Our
# Gramian may differ from NumPy's in the last bits, so we take the fast path only with a 2x margin.
_OFF_DIAGONAL_LIMIT = 0.5e-12
_DIAGONAL_LIMIT = 0.5e-5


def quat_from_rotation_matrix(xmat: np.ndarray) -> np.ndarray | None:
    """SciPy's `Rotation.from_matrix(m).as_quat()` (x, y, z, w) for a flat 3x3 rotation matrix, to the bit.

    The conversion of SciPy's Cython backend (the largest of trace and diagonal picks the formula,
    then the quaternion is divided by its norm), in Python floats. None when `xmat` is not clearly
    a proper rotation (SciPy would orthogonalize it or raise): ask SciPy then.
    """
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = xmat.tolist()
    # SciPy raises on det <= 0; a rotation's is 1. Only the sign is used, so cofactors do.
    if m00 * (m11 * m22 - m12 * m21) - m01 * (m10 * m22 - m12 * m20) + m02 * (m10 * m21 - m11 * m20) < 0.5:
        return None
    rows = ((m00, m01, m02), (m10, m11, m12), (m20, m21, m22))
    for i, row in enumerate(rows):
        for j in range(i, 3):
            other = rows[j]
            dot = row[0] * other[0] + row[1] * other[1] + row[2] * other[2]
            if abs(dot - 1.0) > _DIAGONAL_LIMIT if i == j else abs(dot) > _OFF_DIAGONAL_LIMIT:
                return None
    trace = m00 + m11 + m22
    choice, largest = 0, m00
    if m11 > largest:
        choice, largest = 1, m11
    if m22 > largest:
        choice, largest = 2, m22
    if trace > largest:
        quat = [m21 - m12, m02 - m20, m10 - m01, 1 + trace]
    else:
        i = choice
        j = (i + 1) % 3
        k = (j + 1) % 3
        quat = [0.0, 0.0, 0.0, 0.0]
        quat[i] = 1 - trace + 2 * rows[i][i]
        quat[j] = rows[j][i] + rows[i][j]
        quat[k] = rows[k][i] + rows[i][k]
        quat[3] = rows[k][j] - rows[j][k]
    x, y, z, w = quat
    norm = math.sqrt(x * x + y * y + z * z + w * w)
    return np.array([x / norm, y / norm, z / norm, w / norm])


# The overrides, by method name. They go into a direct subclass of the env's class: Python lets an
# instance switch to a subclass only when nothing but methods was added (no mixin bases).


def _kinitro_id(env: Any, kind: str, name: str) -> int:
    """The index of MuJoCo element `name` of `kind` ("site", "body", "geom"), looked up once."""
    key = (kind, name)
    index = env._kinitro_ids.get(key)
    if index is None:
        index = env._kinitro_ids[key] = getattr(env.model, kind)(name).id
    return index


def _tcp_center(self: Any) -> np.ndarray:
    xpos = self.data.site_xpos
    right, left = _kinitro_id(self, "site", "rightEndEffector"), _kinitro_id(self, "site", "leftEndEffector")
    return (xpos[right] + xpos[left]) / 2.0


def _get_endeff_pos(self: Any) -> np.ndarray:
    return self.data.xpos[_kinitro_id(self, "body", "hand")]


def _get_body_com(self: Any, body_name: str) -> np.ndarray:
    return self.data.xpos[_kinitro_id(self, "body", body_name)]


def _get_site_pos(self: Any, site_name: str) -> np.ndarray:
    return self.data.site_xpos[_kinitro_id(self, "site", site_name)].copy()


def _set_pos_site(self: Any, name: str, pos: np.ndarray) -> None:
    assert isinstance(pos, np.ndarray)
    assert pos.ndim == 1
    self.data.site_xpos[_kinitro_id(self, "site", name)] = pos[:3]


def _touching_object(self: Any, object_geom_id: int) -> bool:
    # Stock MetaWorld walks `data.contact` as Python objects (~130 µs a step in push and
    # pick-place); the contact arrays give the same contacts in the same order.
    contact, force = self.data.contact, self.data.efc_force
    geom1, geom2 = contact.geom1, contact.geom2
    with_object = (geom1 == object_geom_id) | (geom2 == object_geom_id)

    def pad_force(pad: str) -> float:
        pad_id = _kinitro_id(self, "geom", pad)
        rows = np.flatnonzero(with_object & ((geom1 == pad_id) | (geom2 == pad_id)))
        return sum(force[contact.efc_address[rows]].tolist())  # summed in contact order, from 0, as stock

    return pad_force("leftpad_geom") > 0 and pad_force("rightpad_geom") > 0


def _get_curr_obs_combined_no_goal(self: Any) -> np.ndarray:
    # Stock builds the same 18 numbers with np.split and nested np.hstack calls.
    xpos = self.data.xpos
    right, left = _kinitro_id(self, "body", "rightclaw"), _kinitro_id(self, "body", "leftclaw")
    distance = np.linalg.norm(xpos[right] - xpos[left])
    obj_pos, obj_quat = self._get_pos_objects(), self._get_quat_objects()
    assert len(obj_pos) % 3 == 0 and len(obj_quat) % 4 == 0
    objects = len(obj_pos) // 3
    if objects != len(obj_quat) // 4:  # stock's zip() pairing would not fill its slice: let it decide
        return SawyerXYZEnv._get_curr_obs_combined_no_goal(self)
    obs = np.zeros(4 + self._obs_obj_max_len)
    obs[:3] = self.get_endeff_pos()
    obs[3] = np.clip(distance / 0.1, 0.0, 1.0)
    for i in range(objects):
        obs[4 + 7 * i : 7 + 7 * i] = obj_pos[3 * i : 3 * i + 3]
        obs[7 + 7 * i : 11 + 7 * i] = obj_quat[4 * i : 4 * i + 4]
    return obs


def _get_obs(self: Any) -> np.ndarray:
    pos_goal = self._get_pos_goal()
    if self._partially_observable:
        pos_goal = np.zeros_like(pos_goal)
    curr_obs = self._get_curr_obs_combined_no_goal()
    obs = np.concatenate((curr_obs, self._prev_obs, pos_goal))  # np.hstack of 1-d arrays, without its wrapping
    self._prev_obs = curr_obs
    return obs


def _set_xyz_action(self: Any, action: np.ndarray) -> None:
    # np.clip is minimum(maximum()) behind four Python calls; NaN propagates through both alike.
    action = np.minimum(np.maximum(action, -1), 1)
    pos_delta = action * self.action_scale
    new_mocap_pos = self.data.mocap_pos + pos_delta[None]
    new_mocap_pos[0, :] = np.minimum(np.maximum(new_mocap_pos[0, :], self.mocap_low), self.mocap_high)
    self.data.mocap_pos = new_mocap_pos
    self.data.mocap_quat = _MOCAP_QUAT


_MOCAP_QUAT = np.array([1, 0, 1, 0])


def _step(self: Any, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
    """SawyerXYZEnv.step with the observation clipped by minimum/maximum. The unusual cases (task not
    set, a simulation that went unstable earlier) take stock's own path."""
    if not self._set_task_called or self._did_see_sim_exception:
        return SawyerXYZEnv.step(self, action)
    assert len(action) == 4, f"Actions should be size 4, got {len(action)}"
    self.set_xyz_action(action[:3])
    if self.curr_path_length >= self.max_path_length:
        raise ValueError("You must reset the env manually once truncate==True")
    self.do_simulation([action[-1], -action[-1]], n_frames=self.frame_skip)
    self.curr_path_length += 1
    for site in self._target_site_config:
        self._set_pos_site(*site)
    mujoco.mj_forward(self.model, self.data)
    space = self.sawyer_observation_space
    self._last_stable_obs = np.minimum(np.maximum(self._get_obs(), space.low), space.high)
    reward, info = self.evaluate_state(self._last_stable_obs, action)
    truncate = self.curr_path_length == self.max_path_length
    return np.array(self._last_stable_obs, dtype=np.float64), reward, False, truncate, info


def _get_quat_objects(self: Any) -> np.ndarray:
    """For the envs of `_QUAT_FROM_XMAT`."""
    kind, index = self._kinitro_quat_source
    xmat = (self.data.geom_xmat if kind == "geom" else self.data.site_xmat)[index]
    quat = quat_from_rotation_matrix(xmat)
    return quat if quat is not None else Rotation.from_matrix(xmat.reshape(3, 3)).as_quat()


# SawyerXYZEnv's methods (and MujocoEnv's get_body_com) and their fast versions: each replaces the
# original only in env classes that kept it, so an env's own override always wins.
_FAST_PATHS: dict[str, Any] = {
    "tcp_center": property(_tcp_center),
    "get_endeff_pos": _get_endeff_pos,
    "get_body_com": _get_body_com,
    "_get_site_pos": _get_site_pos,
    "_set_pos_site": _set_pos_site,
    "touching_object": _touching_object,
    "_get_curr_obs_combined_no_goal": _get_curr_obs_combined_no_goal,
    "_get_obs": _get_obs,
    "set_xyz_action": _set_xyz_action,
    "step": _step,
}


@functools.cache
def _fast_class(cls: type) -> type:
    namespace = {name: fast for name, fast in _FAST_PATHS.items() if getattr(cls, name) is getattr(SawyerXYZEnv, name)}
    if cls in _QUAT_FROM_XMAT:
        namespace["_get_quat_objects"] = _get_quat_objects
    return type(f"Fast{cls.__name__}", (cls,), {"__module__": __name__, "_kinitro_fast": True, **namespace})


def accelerate(env: SawyerXYZEnv) -> SawyerXYZEnv:
    """Give `env` the fast paths (in place; also returned). Envs of other classes than MetaWorld's
    Sawyer ones are returned unchanged."""
    cls = type(env)
    if not isinstance(env, SawyerXYZEnv) or getattr(cls, "_kinitro_fast", False):
        return env
    env._kinitro_ids = {}
    source = _QUAT_FROM_XMAT.get(cls)
    if source is not None:
        kind, name = source
        env._kinitro_quat_source = (kind, getattr(env.model, kind)(name).id)
    env.__class__ = _fast_class(cls)
    return env
