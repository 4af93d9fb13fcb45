"""The G1-with-hands model built from holosoma's wheel: Menagerie's model where a policy can feel it."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import mujoco
import numpy as np
import pytest

from kinitro_dagster.sim import g1_model
from kinitro_dagster.sim.genesis_g1 import JOINT_NAMES


@pytest.fixture(scope="module")
def model() -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_path(str(g1_model.model_path()))


def _tensor(quat: tuple[float, ...], diag: tuple[float, ...]) -> np.ndarray:
    rotation = np.zeros(9)
    mujoco.mju_quat2Mat(rotation, np.array(quat, dtype=np.float64))
    rotation = rotation.reshape(3, 3)
    return rotation @ np.diag(diag) @ rotation.T


def _body_tensor(model: mujoco.MjModel, name: str) -> np.ndarray:
    body = model.body(name)
    return _tensor(tuple(body.iquat), tuple(body.inertia))


def test_the_model_has_menageries_43_actuated_joints_and_a_free_base(model: mujoco.MjModel) -> None:
    hinges = [model.joint(i).name for i in range(model.njnt) if model.jnt_type[i] == mujoco.mjtJoint.mjJNT_HINGE]
    assert sorted(hinges) == sorted(JOINT_NAMES) and len(hinges) == 43
    assert model.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE and model.body("pelvis").pos[2] == pytest.approx(0.793)
    assert model.nu == 43
    assert np.all(model.actuator_gainprm[:, 0] == g1_model.KP)
    assert np.all(model.actuator_biasprm[:, 1] == -g1_model.KP)
    assert np.all(model.actuator_biasprm[:, 2] < 0)  # the compiler turned the damping ratio into damping
    for i in range(model.nu):  # control range inherited from the joint's range
        joint = model.actuator_trnid[i, 0]
        assert np.allclose(model.actuator_ctrlrange[i], model.jnt_range[joint])
    assert np.allclose(model.dof_armature[6:], g1_model.ARMATURE)
    assert np.allclose(model.dof_frictionloss[6:], g1_model.FRICTION_LOSS)


def test_breadth_first_numbering_of_the_model_is_the_wire_order(model: mujoco.MjModel) -> None:
    """Genesis 0.4.x (Kinitro's) numbers links breadth-first, children in file order: that numbering of
    this model's hinges must be JOINT_NAMES, the order policies read and write joints in."""
    children: dict[int, list[int]] = {}
    for body in range(1, model.nbody):
        children.setdefault(int(model.body_parentid[body]), []).append(body)
    order, queue = [], deque(children[0])
    while queue:
        body = queue.popleft()
        order += [model.joint(j).name for j in range(model.njnt)
                  if model.jnt_bodyid[j] == body and model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE]  # fmt: skip
        queue.extend(children.get(body, []))
    assert tuple(order) == JOINT_NAMES


def test_the_right_hand_is_menageries_right_hand(model: mujoco.MjModel) -> None:
    # Values from Menagerie's g1_with_hands.xml, right side (ours are mirrored from the left).
    menagerie = {
        "right_hand_thumb_0_link": ((0.643965, 0.462991, -0.398986, 0.460173), (1.6546e-05, 1.60058e-05, 1.43741e-05),
                                    (-0.000884246, 0.00863407, 0.000944293)),
        "right_wrist_yaw_link": ((0.505358, 0.513241, 0.493844, 0.487149), (0.00105989, 0.000895419, 0.000323842),
                                 (0.0885506, -0.00212216, -0.000374562)),
        "right_hand_index_1_link": ((0.502861, 0.502639, 0.491799, 0.502612), (4.61314e-06, 3.86645e-06, 1.53495e-06),
                                    (0.0262819, -0.00171735, -0.000107789)),
    }  # fmt: skip
    for name, (quat, diag, ipos) in menagerie.items():
        assert np.allclose(_body_tensor(model, name), _tensor(quat, diag), rtol=1e-4, atol=1e-10), name
        assert np.allclose(model.body(name).ipos, ipos)
    ranges = {"right_hand_thumb_0_joint": (-1.0472, 1.0472), "right_hand_thumb_1_joint": (-1.0472, 0.724312),
              "right_hand_thumb_2_joint": (-1.74533, 0.0), "right_hand_middle_0_joint": (0.0, 1.5708),
              "right_hand_index_1_joint": (0.0, 1.74533), "left_hand_index_1_joint": (-1.74533, 0.0)}  # fmt: skip
    for name, expected in ranges.items():
        assert np.allclose(model.joint(name).range, expected), name
    assert np.allclose(model.body("right_hand_middle_0_link").pos, (0.1192, -0.0046, -0.0285))


def test_feet_touch_the_ground_with_four_small_spheres_each(model: mujoco.MjModel) -> None:
    for side in ("left", "right"):
        body = model.body(f"{side}_ankle_roll_link").id
        spheres = [g for g in range(model.ngeom) if model.geom_bodyid[g] == body
                   and model.geom_type[g] == mujoco.mjtGeom.mjGEOM_SPHERE and model.geom_contype[g]]  # fmt: skip
        assert len(spheres) == 4
        assert np.allclose(model.geom_size[spheres, 0], g1_model.FOOT_SPHERE_RADIUS)
        assert np.allclose(model.geom_friction[spheres, 0], g1_model.FOOT_FRICTION)
    visual_only = [g for g in range(model.ngeom) if model.geom_group[g] == 2]
    assert visual_only and not model.geom_contype[visual_only].any()


def test_missing_assets_name_the_script_that_fetches_them(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"fetch-g1-assets\.sh"):
        g1_model.model_path(tmp_path)


def test_the_built_model_is_rebuilt_when_its_source_changes(tmp_path: Path) -> None:
    source = g1_model.assets_dir()
    (tmp_path / "meshes").symlink_to(source / "meshes")
    (tmp_path / "g1_29dof.xml").write_text((source / "g1_29dof.xml").read_text())
    built = g1_model.model_path(tmp_path)
    first = built.read_text()
    assert g1_model.model_path(tmp_path).read_text() == first  # cached
    (tmp_path / "g1_29dof.xml").write_text((source / "g1_29dof.xml").read_text() + "\n<!-- edited -->\n")
    assert g1_model.model_path(tmp_path).read_text().splitlines()[0] != first.splitlines()[0]
