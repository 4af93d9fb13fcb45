"""The Unitree G1 humanoid with its three-finger hands, as MuJoCo Menagerie's `g1_with_hands.xml`
describes it (the model Kinitro's `genesis/g1-v0` loads), built from a registry package.

No PyPI package ships Menagerie's G1 files: PyPI's `mujoco-menagerie` downloads each model from
GitHub at run time, which these hosts cannot reach. `holosoma` (Apache-2.0, on PyPI) ships
Unitree's G1 meshes (hands included) and Unitree's 29-joint body (`g1_29dof.xml`, the same
source Menagerie derived its model from: body frames, inertials, joint axes, ranges and force
limits are identical). `sim_images/genesis/fetch-g1-assets.sh` downloads that one wheel (pinned
by version and sha256, no dependencies: holosoma's own pins numpy<2) and keeps its G1 folder.

`build_model_xml` turns that body into Menagerie's model and writes it beside the meshes:
- everything holosoma added for its own training is dropped: motors, contact pairs, tendons,
  sensors, helper bodies, and its simplified collision capsules;
- geometry as Menagerie's: mesh collision on the links Menagerie collides, its cylinders at the
  shoulders, four 5 mm spheres under each foot (friction 0.6), visual meshes without collision;
- joints as Menagerie's `g1` class: armature 0.01, friction loss 0.3;
- the rubber hands give way to the three-finger hands (7 joints a hand, `HAND_LINKS`, with the
  wrist's inertial as Menagerie's hand model has it; the right hand is the left one mirrored);
- one position actuator a joint, kp 500, damping ratio 1, control range the joint's: Genesis
  takes its PD gains from these, as it does from Menagerie's file.
The body order is Menagerie's (finger links thumb, middle, index), so Genesis numbers the DOFs
as it does for Menagerie's model, and a policy's joint vector means the same joints here.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

# Where fetch-g1-assets.sh puts holosoma's G1 folder (meshes/ and g1_29dof.xml).
ASSETS_DIR_ENV = "KINITRO_G1_ASSETS_DIR"
DEFAULT_ASSETS_DIR = Path.home() / ".cache" / "kinitro" / "g1"
MODEL_FILE = "g1_with_hands.xml"
_BUILDER_VERSION = "2"  # bump when the built model changes, so cached files are rebuilt

KP = 500.0
DAMPING_RATIO = 1.0
ARMATURE = 0.01
FRICTION_LOSS = 0.3
FOOT_SPHERES = ((-0.05, 0.025, -0.03), (-0.05, -0.025, -0.03), (0.12, 0.03, -0.03), (0.12, -0.03, -0.03))
FOOT_SPHERE_RADIUS = 0.005
FOOT_FRICTION = 0.6
_HEAD_OFFSET = (0.0039635, 0.0, -0.044)  # head and logo meshes on the torso link
_PALM_OFFSET = (0.0415, 0.003, 0.0)  # palm mesh on the left wrist-yaw link (y mirrored on the right)


@dataclass(frozen=True)
class Inertial:
    pos: tuple[float, float, float]
    quat: tuple[float, float, float, float]  # w, x, y, z
    mass: float
    diaginertia: tuple[float, float, float]


@dataclass(frozen=True)
class HandLink:
    """One finger link of the left hand (the right one is its mirror image in the sagittal plane)."""

    name: str  # without the side: "hand_thumb_0" -> left_hand_thumb_0_link / _joint
    parent: str  # "wrist_yaw" or another HandLink's name
    pos: tuple[float, float, float]
    axis: str  # "y" or "z"
    range: tuple[float, float]
    force: float  # actuator force limit, N·m
    inertial: Inertial
    box_collision: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None  # size, pos


_PROXIMAL = Inertial((0.0354744, 0.000827888, 0.0003809), (0.391313, 0.552395, 0.417187, 0.606373),
                     0.0588507, (1.28514e-05, 1.22902e-05, 5.9666e-06))  # fmt: skip
_DISTAL = Inertial((0.0262819, 0.00171735, -0.000107789), (0.502612, 0.491799, 0.502639, 0.502861),
                   0.0203063, (4.61314e-06, 3.86645e-06, 1.53495e-06))  # fmt: skip

# Unitree's three-finger hand (Dex3-1) as Menagerie's g1_with_hands.xml mounts it, left side.
HAND_LINKS: tuple[HandLink, ...] = (
    HandLink("hand_thumb_0", "wrist_yaw", (0.067, 0.003, 0.0), "y", (-1.0472, 1.0472), 2.45,
             Inertial((-0.000884246, -0.00863407, 0.000944293), (0.462991, 0.643965, -0.460173, 0.398986),
                      0.0862366, (1.6546e-05, 1.60058e-05, 1.43741e-05))),
    HandLink("hand_thumb_1", "hand_thumb_0", (-0.0025, -0.0193, 0.0), "z", (-0.724312, 1.0472), 1.4,
             Inertial((-0.000827888, -0.0354744, -0.0003809), (0.685598, 0.705471, -0.15207, 0.0956069),
                      0.0588507, (1.28514e-05, 1.22902e-05, 5.9666e-06)),
             box_collision=((0.01, 0.015, 0.01), (-0.001, -0.032, 0.0))),
    HandLink("hand_thumb_2", "hand_thumb_1", (0.0, -0.0458, 0.0), "z", (0.0, 1.74533), 1.4,
             Inertial((-0.00171735, -0.0262819, 0.000107789), (0.703174, 0.710977, -0.00017564, -0.00766553),
                      0.0203063, (4.61314e-06, 3.86645e-06, 1.53495e-06))),
    HandLink("hand_middle_0", "wrist_yaw", (0.1192, 0.0046, -0.0285), "z", (-1.5708, 0.0), 1.4, _PROXIMAL),
    HandLink("hand_middle_1", "hand_middle_0", (0.0458, 0.0, 0.0), "z", (-1.74533, 0.0), 1.4, _DISTAL),
    HandLink("hand_index_0", "wrist_yaw", (0.1192, 0.0046, 0.0285), "z", (-1.5708, 0.0), 1.4, _PROXIMAL),
    HandLink("hand_index_1", "hand_index_0", (0.0458, 0.0, 0.0), "z", (-1.74533, 0.0), 1.4, _DISTAL),
)  # fmt: skip

# The wrist-yaw link carrying the hand (the rubber-hand body holosoma ships is lighter).
WRIST_WITH_HAND = Inertial((0.0885506, 0.00212216, -0.000374562), (0.487149, 0.493844, 0.513241, 0.505358),
                           0.457415, (0.00105989, 0.000895419, 0.000323842))  # fmt: skip

# Links Menagerie collides with their own mesh (others carry only a visual mesh).
_MESH_COLLISION_LINKS = ("hip_pitch", "hip_roll", "hip_yaw", "knee", "ankle_pitch", "shoulder_yaw", "elbow",
                         "wrist_roll", "wrist_pitch", "wrist_yaw")  # fmt: skip
# Menagerie's shoulder collision cylinders (left side): link -> (size, pos, quat).
_SHOULDER_CYLINDERS = {
    "shoulder_pitch": ((0.03, 0.025), (0.0, 0.04, -0.01), (0.707107, 0.0, 0.707107, 0.0)),
    "shoulder_roll": ((0.03, 0.015), (-0.004, 0.006, -0.053), (1.0, 0.0, 0.0, 0.0)),
}
# Links whose visual mesh is black in Menagerie (the rest are metal grey).
_BLACK = ("pelvis", "hip_pitch", "ankle_roll")

SIDES = ("left", "right")
_MUJOCO_SOLIMP = [0.9, 0.95, 0.001, 0.5, 2.0]  # MuJoCo's default, which Menagerie's joints keep


def assets_dir() -> Path:
    return Path(os.environ.get(ASSETS_DIR_ENV) or DEFAULT_ASSETS_DIR)


def model_path(directory: Path | None = None) -> Path:
    """The built model's path, building it first if it is missing or was built by another version."""
    directory = directory or assets_dir()
    source = directory / "g1_29dof.xml"
    if not source.is_file() or not (directory / "meshes").is_dir():
        raise FileNotFoundError(
            f"the G1 assets are not in {directory}: run sim_images/genesis/fetch-g1-assets.sh {directory} "
            f"(or set {ASSETS_DIR_ENV} to where they are)"
        )
    target = directory / MODEL_FILE
    stamp = _stamp(source)
    if not target.is_file() or f"<!-- {stamp} -->" not in target.read_text():
        xml = build_model_xml(source)
        temporary = target.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(f"<!-- {stamp} -->\n{xml}")
        temporary.replace(target)  # atomic: a concurrent worker reads the old file or the new one
    return target


def _stamp(source: Path) -> str:
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    return f"kinitro g1 builder {_BUILDER_VERSION} from g1_29dof.xml {digest}"


def build_model_xml(source: Path) -> str:
    """Menagerie's G1 with hands, from holosoma's 29-joint body (module docstring), as MJCF text."""
    spec = mujoco.MjSpec.from_file(str(source))
    spec.meshdir = str((source.parent / "meshes").resolve())
    spec.modelname = "g1_29dof_with_hand_rev_1_0"
    _strip_training_additions(spec)
    for side in SIDES:
        _mount_hand(spec, side)
    _add_geometry(spec)
    for joint in spec.joints:
        if joint.type == mujoco.mjtJoint.mjJNT_HINGE:
            joint.armature, joint.frictionloss = ARMATURE, FRICTION_LOSS
            joint.solimp_limit = _MUJOCO_SOLIMP  # holosoma's class stiffens the limits
    _add_actuators(spec)
    spec.compile()  # fails here, naming the element, if anything above is inconsistent
    return spec.to_xml()


def _strip_training_additions(spec: mujoco.MjSpec) -> None:
    for element in [*spec.actuators, *spec.pairs, *spec.excludes, *spec.tendons, *spec.sensors, *spec.keys,
                    *spec.geoms, spec.mesh("left_rubber_hand"), spec.mesh("right_rubber_hand")]:  # fmt: skip
        element.delete()
    for body in spec.bodies:
        if body.name.endswith("_contact_point"):  # holosoma's height-sampling helpers
            spec.detach_body(body)
    for site in spec.sites:
        if site.name == "pelvis":
            site.delete()
    for side in SIDES:
        for link in HAND_LINKS:
            spec.add_mesh(name=f"{side}_{link.name}_link", file=f"{side}_{link.name}_link.STL")
        spec.add_mesh(name=f"{side}_hand_palm_link", file=f"{side}_hand_palm_link.STL")
    for name, grey in (("metal", 0.7), ("black", 0.2)):
        if spec.material(name) is None:
            spec.add_material(name=name, rgba=[grey, grey, grey, 1])


def _mirror(side: str, vector: tuple[float, ...]) -> list[float]:
    x, y, z = vector
    return [x, y if side == "left" else -y, z]


def _mirror_inertial(side: str, inertial: Inertial) -> tuple[list[float], list[float], list[float]]:
    """A link's (ipos, iquat, diaginertia), mirrored for the right side: the tensor becomes M I M
    (M = diag(1, -1, 1)), diagonalized again into principal axes with a proper rotation."""
    if side == "left":
        return list(inertial.pos), list(inertial.quat), list(inertial.diaginertia)
    rotation = np.zeros(9)
    mujoco.mju_quat2Mat(rotation, np.array(inertial.quat, dtype=np.float64))
    rotation = rotation.reshape(3, 3)
    mirror = np.diag([1.0, -1.0, 1.0])
    tensor = mirror @ rotation @ np.diag(inertial.diaginertia) @ rotation.T @ mirror
    moments, axes = np.linalg.eigh(tensor)
    if np.linalg.det(axes) < 0:
        axes[:, 0] = -axes[:, 0]
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, axes.flatten())
    return _mirror(side, inertial.pos), quat.tolist(), moments.tolist()


def _set_inertial(body: mujoco.MjsBody, side: str, inertial: Inertial) -> None:
    body.explicitinertial = True
    body.mass = inertial.mass
    body.ipos, body.iquat, body.inertia = _mirror_inertial(side, inertial)


def _mount_hand(spec: mujoco.MjSpec, side: str) -> None:
    wrist = spec.body(f"{side}_wrist_yaw_link")
    _set_inertial(wrist, side, WRIST_WITH_HAND)
    bodies = {"wrist_yaw": wrist}
    for link in HAND_LINKS:
        body = bodies[link.parent].add_body(name=f"{side}_{link.name}_link", pos=_mirror(side, link.pos))
        _set_inertial(body, side, link.inertial)
        # A hinge's sense flips in the mirror unless its axis lies in the mirror plane's normal (y).
        low, high = link.range if side == "left" or link.axis == "y" else (-link.range[1], -link.range[0])
        body.add_joint(name=f"{side}_{link.name}_joint", type=mujoco.mjtJoint.mjJNT_HINGE,
                       axis=[0, 1, 0] if link.axis == "y" else [0, 0, 1], range=[low, high],
                       actfrcrange=[-link.force, link.force],
                       actfrclimited=mujoco.mjtLimited.mjLIMITED_TRUE)  # fmt: skip
        bodies[link.name] = body


def _add_geometry(spec: mujoco.MjSpec) -> None:
    pelvis = spec.body("pelvis")
    _visual(pelvis, "pelvis", black=True)
    _visual(pelvis, "pelvis_contour_link")
    _collision_mesh(pelvis, "pelvis_contour_link")
    for name in ("waist_yaw_link", "waist_roll_link"):
        _visual(spec.body(name), name)
    torso = spec.body("torso_link")
    _visual(torso, "torso_link")
    _collision_mesh(torso, "torso_link")
    _visual(torso, "logo_link", pos=_HEAD_OFFSET, black=True)
    _visual(torso, "head_link", pos=_HEAD_OFFSET, black=True)
    _collision_mesh(torso, "head_link", pos=_HEAD_OFFSET)
    for side in SIDES:
        for link in ("hip_pitch", "hip_roll", "hip_yaw", "knee", "ankle_pitch", "ankle_roll", "shoulder_pitch",
                     "shoulder_roll", "shoulder_yaw", "elbow", "wrist_roll", "wrist_pitch", "wrist_yaw"):  # fmt: skip
            name = f"{side}_{link}_link"
            body = spec.body(name)
            _visual(body, name, black=link in _BLACK)
            if link in _MESH_COLLISION_LINKS:
                _collision_mesh(body, name)
            if link in _SHOULDER_CYLINDERS:
                size, pos, quat = _SHOULDER_CYLINDERS[link]
                body.add_geom(type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[*size, 0], pos=_mirror(side, pos),
                              quat=list(quat), **_COLLIDES)  # fmt: skip
        ankle = spec.body(f"{side}_ankle_roll_link")
        for pos in FOOT_SPHERES:
            ankle.add_geom(type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[FOOT_SPHERE_RADIUS, 0, 0], pos=list(pos),
                           priority=1, friction=[FOOT_FRICTION, 0.005, 0.0001], condim=3, **_COLLIDES)  # fmt: skip
        wrist = spec.body(f"{side}_wrist_yaw_link")
        palm = f"{side}_hand_palm_link"
        _visual(wrist, palm, pos=_mirror(side, _PALM_OFFSET))
        _collision_mesh(wrist, palm, pos=_mirror(side, _PALM_OFFSET))
        for link in HAND_LINKS:
            name = f"{side}_{link.name}_link"
            body = spec.body(name)
            _visual(body, name)
            if link.box_collision is None:
                _collision_mesh(body, name)
            else:
                size, pos = link.box_collision
                body.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, size=list(size), pos=_mirror(side, pos), **_COLLIDES)


# Explicit, because holosoma's body class turns collisions off for every geom it does not name.
_COLLIDES = {"group": 3, "contype": 1, "conaffinity": 1}


def _visual(body: mujoco.MjsBody, mesh: str, *, pos: tuple = (0, 0, 0), black: bool = False) -> None:
    body.add_geom(type=mujoco.mjtGeom.mjGEOM_MESH, meshname=mesh, pos=list(pos), contype=0, conaffinity=0,
                  density=0, group=2, material="black" if black else "metal")  # fmt: skip


def _collision_mesh(body: mujoco.MjsBody, mesh: str, *, pos: tuple = (0, 0, 0)) -> None:
    body.add_geom(type=mujoco.mjtGeom.mjGEOM_MESH, meshname=mesh, pos=list(pos), **_COLLIDES)


def _add_actuators(spec: mujoco.MjSpec) -> None:
    """A position servo per hinge, in joint order: kp, damping ratio (MuJoCo's compiler turns a positive
    biasprm[2] into the damping for the joint's inertia) and the joint's range as control range."""
    for joint in spec.joints:
        if joint.type != mujoco.mjtJoint.mjJNT_HINGE:
            continue
        actuator = spec.add_actuator(name=joint.name, target=joint.name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        actuator.gaintype = mujoco.mjtGain.mjGAIN_FIXED
        actuator.biastype = mujoco.mjtBias.mjBIAS_AFFINE
        actuator.gainprm[0] = KP
        actuator.biasprm[:3] = [0.0, -KP, DAMPING_RATIO]
        actuator.inheritrange = 1.0
