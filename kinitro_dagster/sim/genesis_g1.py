"""The genesis family: Unitree G1 humanoid tasks on Genesis, wire-compatible with Kinitro's `genesis/g1-v0`.

What a miner sees and sends is Kinitro's (facts in sim_images/genesis/KINITRO_COMPATIBILITY.md):
- `task_config`: env_id `genesis/g1-v0`, env_name `genesis`, task_name `g1-v0`, seed and task_id
  both the episode seed.
- Observation: `proprio` with `base_pos` (3, world, m), `base_quat` (4, w x y z), `base_vel` (6:
  linear then angular, world frame), `joint_pos` and `joint_vel` (43 each, `JOINT_NAMES` order);
  `rgb.ego` and `depth.ego` (84x84 from a camera on the torso link looking forward, vertical field
  of view 90°; raw base64 as everywhere in the protocol, RGB uint8 HxWx3, depth float32 HxW in m);
  `extra` with `task_prompt` and `task_type`; `cam_intrinsics` and `cam_extrinsics` empty. With
  privileged state (the demo track, never in production) `extra["state"]` adds what a scripted
  policy needs: the target's and the destination's current positions and the goal's.
- Action: `continuous.joint_pos_target`, 43 numbers clipped to [-1, 1]; joint i is driven to
  `DEFAULT_POSE[i] + a[i] * ACTION_SCALE[i]` by the model's position servos (kp 500, damping ratio 1).
  Each action holds for 2 physics steps of 10 ms (50 Hz control).
- Scene: as Kinitro's but for the floor, plain grey instead of Genesis's checker (`FLOOR_COLOR`).
- Episode end: success (unless `EnvConfig.stop_on_success` is off), a fall (base below 0.3 m) or
  500 actions. The robot spawns with its pelvis at 0.75 m above Menagerie's own height (1.54 m, as
  Genesis composes the two) in the default pose, unheld; the first observation follows one physics
  step.

Scenes and tasks come from the seed (sim/g1_tasks.py). The scene (plane, robot, objects) is built
once per distinct scene and reset in place when the same seed plays again; Genesis compiles its
kernels once per host (its cache, ~/.cache/quadrants), and a process pays Genesis's start-up once.
Physics runs on the GPU when torch sees one, else on the CPU.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from kinitro_dagster.protocol import PolicyAction, encode_image
from kinitro_dagster.sim import g1_model
from kinitro_dagster.sim.base import EnvConfig, StepResult
from kinitro_dagster.sim.g1_tasks import SceneObject, Task, generate_scene, generate_task, reward, success

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")  # headless rendering (llvmpipe without a GPU)

logger = logging.getLogger(__name__)

ENV_ID = "genesis/g1-v0"
TASK_NAME = "g1-v0"
SIM_DT = 0.01
PHYSICS_STEPS_PER_ACTION = 2
MAX_STEPS = 500
FALL_HEIGHT = 0.3
SPAWN_OFFSET = (0.0, 0.0, 0.75)  # added to the model's own pelvis height (0.793 m)
CAMERA = "ego"
# Kinitro's floor is Genesis's default plane, a tiled checker texture. Without a GPU, Mesa's llvmpipe
# renders it at up to 30 s a frame when the camera looks towards the horizon (measured here: 90 actions
# with the camera took 93 s, 25 s the slowest; with this plain floor 8 s); the checker costs a GPU nothing,
# but one floor everywhere keeps frames the same on every host.
FLOOR_COLOR = (0.5, 0.5, 0.5)
CAMERA_FOV = 90.0
# Camera frame in the torso link's frame: 15 cm forward, 25 cm up, looking along the link's +x.
CAMERA_OFFSET = np.array([[0.0, 0.0, -1.0, 0.15], [-1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.25],
                          [0.0, 0.0, 0.0, 1.0]])  # fmt: skip
_SEED_LIMIT = 2**32

# The wire order of joint_pos, joint_vel and joint_pos_target: Kinitro sends Genesis's DOFs 6..48 as
# they are, and the Genesis its image installs (genesis-world<1: 0.4.7) numbers the links of an MJCF
# breadth-first, children in file order. Measured here: genesis-world 0.4.7 gives exactly this order
# for this model; 1.4.5 (ours) numbers depth-first, so joints are mapped by name. Kinitro's robot config
# declares another order (legs, waist, arms, hands) but uses it only for its length.
JOINT_NAMES: tuple[str, ...] = tuple(
    f"{name}_joint"
    for name in (
        "left_hip_pitch", "right_hip_pitch", "waist_yaw", "left_hip_roll", "right_hip_roll", "waist_roll",
        "left_hip_yaw", "right_hip_yaw", "waist_pitch", "left_knee", "right_knee", "left_shoulder_pitch",
        "right_shoulder_pitch", "left_ankle_pitch", "right_ankle_pitch", "left_shoulder_roll",
        "right_shoulder_roll", "left_ankle_roll", "right_ankle_roll", "left_shoulder_yaw", "right_shoulder_yaw",
        "left_elbow", "right_elbow", "left_wrist_roll", "right_wrist_roll", "left_wrist_pitch",
        "right_wrist_pitch", "left_wrist_yaw", "right_wrist_yaw", "left_hand_thumb_0", "left_hand_middle_0",
        "left_hand_index_0", "right_hand_thumb_0", "right_hand_middle_0", "right_hand_index_0",
        "left_hand_thumb_1", "left_hand_middle_1", "left_hand_index_1", "right_hand_thumb_1",
        "right_hand_middle_1", "right_hand_index_1", "left_hand_thumb_2", "right_hand_thumb_2",
    )
)  # fmt: skip
# Kinitro's default pose and action scale, element i for wire joint i as Kinitro applies them. They
# were written for the declared order, so some joints get another joint's value (wire joint 10, the
# right knee, a target of -0.2 rad, below its -0.087 limit): kept, because that is the robot Kinitro's
# miners train on.
_LEG_POSE = (-0.1, 0.0, 0.0, 0.3, -0.2, 0.0)
DEFAULT_POSE = np.array([*_LEG_POSE, *_LEG_POSE, 0.0, 0.0, 0.0, 0.0, 0.2, 0.0, -0.3, 0.0, 0.0, 0.0,
                         0.0, -0.2, 0.0, -0.3, 0.0, 0.0, 0.0, *([0.0] * 14)])  # fmt: skip
_LEG_SCALE = (0.3, 0.2, 0.2, 0.4, 0.3, 0.2)
ACTION_SCALE = np.array([*_LEG_SCALE, *_LEG_SCALE, 0.3, 0.2, 0.2, *([0.5] * 14), *([0.8] * 14)])
JOINT_COUNT = len(JOINT_NAMES)

_initialized = False


def init_genesis() -> str:
    """Start Genesis once per process, on the GPU when torch sees one; returns the backend's name."""
    global _initialized
    import genesis as gs
    import torch

    backend = "gpu" if torch.cuda.is_available() else "cpu"
    if not _initialized:
        started = time.perf_counter()
        gs.init(backend=gs.gpu if backend == "gpu" else gs.cpu, logging_level="warning")
        _initialized = True
        logger.info("genesis started backend=%s seconds=%.1f", backend, time.perf_counter() - started,
                    extra={"backend": backend})  # fmt: skip
    return backend


def joint_targets(action: PolicyAction) -> np.ndarray:
    """The joint positions an action asks for (module docstring); `ValueError` for another schema."""
    if action.joint_pos_target is None:
        raise ValueError(f"{ENV_ID} takes action.continuous.joint_pos_target[{JOINT_COUNT}], not ee_twist")
    values = np.zeros(JOINT_COUNT)
    given = np.asarray(action.joint_pos_target, dtype=np.float64)[:JOINT_COUNT]
    if not np.all(np.isfinite(given)):
        raise ValueError("joint_pos_target is not finite")
    values[: len(given)] = given  # as Kinitro: a shorter vector is padded with zeros
    return DEFAULT_POSE + np.clip(values, -1.0, 1.0) * ACTION_SCALE


class GenesisG1Env:
    """`genesis/g1-v0`: one scene at a time, rebuilt when the seed's scene differs (module docstring)."""

    def __init__(self, env_id: str, config: EnvConfig | None = None) -> None:
        if env_id != ENV_ID:
            raise ValueError(f"unknown genesis env id {env_id!r}; known: {ENV_ID}")
        self.env_id = env_id
        self.config = config or EnvConfig()
        if not 1 <= self.config.max_steps <= MAX_STEPS:
            raise ValueError(f"max_steps must be in [1, {MAX_STEPS}] for {ENV_ID}, got {self.config.max_steps}")
        self.backend = init_genesis()
        self._model_file = str(g1_model.model_path())
        self._scene = None
        self._scene_objects: tuple[SceneObject, ...] = ()
        self._entities: dict[str, object] = {}
        self._robot = None
        self._camera = None
        self._dofs: list[int] = []
        self.task: Task | None = None
        self._seed = 0
        self._steps = 0
        self._success = False
        self._done = True
        self.build_seconds = 0.0  # the last scene build's cost

    # -- SimEnv -------------------------------------------------------------------------------

    def reset(self, seed: int) -> dict:
        if not isinstance(seed, int | np.integer) or not 0 <= int(seed) < _SEED_LIMIT:
            raise ValueError(f"episode seed must be an integer in [0, 2**32), got {seed!r}")
        self._seed = int(seed)
        scene_objects = generate_scene(self._seed)
        if scene_objects != self._scene_objects or self._scene is None:
            self._build(scene_objects)
        else:
            self._scene.reset()
        self.task = generate_task(self._seed, scene_objects)
        self._robot.set_dofs_position(DEFAULT_POSE, dofs_idx_local=self._dofs, zero_velocity=True)
        self._scene.step()  # Kinitro's first observation follows one settling step
        self._steps, self._success, self._done = 0, False, False
        return self._observation()

    def step(self, action: PolicyAction) -> StepResult:
        if self._done:
            raise RuntimeError(f"{self.env_id}: episode is over (or never started); call reset(seed) first")
        self._robot.control_dofs_position(joint_targets(action), dofs_idx_local=self._dofs)
        for _ in range(PHYSICS_STEPS_PER_ACTION):
            self._scene.step()
        self._steps += 1
        base, positions = self.base_position(), self.object_positions()
        fallen = base[2] < FALL_HEIGHT
        done_now = success(self.task, base_position=base, positions=positions)
        self._success = self._success or done_now
        ended = (self._success and self.config.stop_on_success) or fallen
        self._done = ended or self._steps >= self.config.max_steps
        return StepResult(observation=self._observation(), success=self._success, done=self._done,
                          reward=reward(self.task, base_position=base, positions=positions, fallen=fallen))  # fmt: skip

    def task_config(self) -> dict:
        return {"env_id": self.env_id, "env_name": "genesis", "task_name": TASK_NAME, "seed": self._seed,
                "task_id": self._seed}  # fmt: skip

    def close(self) -> None:
        self._destroy()
        self._done = True

    # -- state --------------------------------------------------------------------------------

    @property
    def steps(self) -> int:
        return self._steps

    def base_position(self) -> tuple[float, float, float]:
        return tuple(float(x) for x in _flat(self._robot.get_pos()))

    def object_positions(self) -> dict[str, tuple[float, float, float]]:
        return {object_id: tuple(float(x) for x in _flat(entity.get_pos()))
                for object_id, entity in self._entities.items()}  # fmt: skip

    def joint_positions(self) -> np.ndarray:
        return _flat(self._robot.get_dofs_position(dofs_idx_local=self._dofs)).astype(np.float64)

    def set_base_pose(self, position: tuple[float, float, float], quat: tuple[float, ...] | None = None) -> None:
        """Teleport the base (tests): its position and, if given, its orientation (w, x, y, z)."""
        if quat is not None:
            self._robot.set_quat(np.asarray(quat, dtype=np.float64))
        self._robot.set_pos(np.asarray(position, dtype=np.float64))

    def set_object_position(self, object_id: str, position: tuple[float, float, float]) -> None:
        self._entities[object_id].set_pos(np.asarray(position, dtype=np.float64))

    def __enter__(self) -> GenesisG1Env:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _build(self, scene_objects: tuple[SceneObject, ...]) -> None:
        import genesis as gs

        started = time.perf_counter()
        self._destroy()
        scene = gs.Scene(sim_options=gs.options.SimOptions(dt=SIM_DT), show_viewer=False,
                         renderer=gs.renderers.Rasterizer())  # fmt: skip
        scene.add_entity(gs.morphs.Plane(), surface=gs.surfaces.Default(color=FLOOR_COLOR))
        self._robot = scene.add_entity(gs.morphs.MJCF(file=self._model_file, pos=SPAWN_OFFSET))
        self._entities = {obj.object_id: scene.add_entity(_morph(gs, obj), surface=gs.surfaces.Default(color=obj.rgb))
                          for obj in scene_objects}  # fmt: skip
        self._camera = None
        if self.config.use_images:
            self._camera = scene.add_camera(res=(self.config.image_size, self.config.image_size), fov=CAMERA_FOV,
                                            pos=(0.0, 0.0, 1.0), lookat=(1.0, 0.0, 1.0), GUI=False)  # fmt: skip
        scene.build(n_envs=0)
        self._dofs = [self._robot.get_joint(name).dofs_idx_local[0] for name in JOINT_NAMES]
        if self._camera is not None:
            self._camera.attach(self._robot.get_link("torso_link"), CAMERA_OFFSET)
        self._scene, self._scene_objects = scene, scene_objects
        self.build_seconds = time.perf_counter() - started
        logger.info("genesis scene built env_id=%s objects=%d seconds=%.1f", self.env_id, len(scene_objects),
                    self.build_seconds, extra={"env_id": self.env_id, "build_seconds": self.build_seconds})  # fmt: skip

    def _destroy(self) -> None:
        if self._scene is not None:
            self._scene.destroy()
        self._scene, self._scene_objects, self._entities, self._robot, self._camera = None, (), {}, None, None

    def _observation(self) -> dict:
        robot = self._robot
        proprio = {
            "base_pos": _floats(robot.get_pos()),
            "base_quat": _floats(robot.get_quat()),
            "base_vel": _floats(robot.get_vel()) + _floats(robot.get_ang()),
            "joint_pos": _floats(robot.get_dofs_position(dofs_idx_local=self._dofs)),
            "joint_vel": _floats(robot.get_dofs_velocity(dofs_idx_local=self._dofs)),
        }
        rgb, depth = {}, {}
        if self._camera is not None:
            self._camera.move_to_attach()
            color, depth_map, _, _ = self._camera.render(rgb=True, depth=self.config.depth)
            rgb = {CAMERA: encode_image(np.asarray(color, dtype=np.uint8))}
            if self.config.depth:
                depth = {CAMERA: encode_image(np.asarray(depth_map, dtype=np.float32))}
        extra = {"task_prompt": self.task.prompt, "task_type": self.task.task_type.value}
        if self.config.privileged_state:
            extra["state"] = self._privileged_state()
        return {"rgb": rgb, "depth": depth, "proprio": proprio, "cam_intrinsics": {}, "cam_extrinsics": {},
                "extra": extra}  # fmt: skip

    def _privileged_state(self) -> dict:
        """Positions the task is judged on: the target now, the destination now (place, push) and the
        goal (navigate: the target's spawn point; pickup: the height to lift above)."""
        positions = self.object_positions()
        task = self.task
        state = {"target": list(positions[task.target.object_id]), "target_spawn": list(task.target.position)}
        if task.destination is not None:
            state["destination"] = list(positions[task.destination.object_id])
        return state


def _morph(gs: object, obj: SceneObject) -> object:
    fixed = not obj.movable
    if obj.shape == "box":
        return gs.morphs.Box(pos=obj.position, size=(obj.size,) * 3, fixed=fixed)
    if obj.shape == "sphere":
        return gs.morphs.Sphere(pos=obj.position, radius=obj.size, fixed=fixed)
    return gs.morphs.Cylinder(pos=obj.position, radius=obj.size, height=2 * obj.size, fixed=fixed)


def _flat(tensor: object) -> np.ndarray:
    value = tensor.cpu().numpy() if hasattr(tensor, "cpu") else np.asarray(tensor)
    return value.reshape(-1)


def _floats(tensor: object) -> list[float]:
    return _flat(tensor).astype(np.float32).tolist()  # float32 on the wire, as Kinitro sends it


assert DEFAULT_POSE.size == ACTION_SCALE.size == JOINT_COUNT


def warm_up() -> dict[str, float]:
    """Start Genesis and play one step with the camera: compiles the kernels an episode needs into
    Genesis's cache (the genesis image runs this while building). Returns the seconds each part took."""
    started = time.perf_counter()
    with GenesisG1Env(ENV_ID, EnvConfig(max_steps=1)) as env:
        ready = time.perf_counter()
        env.reset(0)
        env.step(PolicyAction(joint_pos_target=np.zeros(JOINT_COUNT)))
        return {"start_s": ready - started, "first_episode_s": time.perf_counter() - ready}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(warm_up())
