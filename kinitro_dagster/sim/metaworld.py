"""MetaWorld (v3, Sawyer arm) tasks as `SimEnv`s, at the fidelity the policy protocol promises.

Action mapping. `ee_twist[:3]` is MetaWorld's native xyz action, multiplied by
`LINEAR_TWIST_SCALE` (1.0) and clipped to [-1, 1]: a twist component of 1 moves the hand's mocap
target by `METAWORLD_HAND_STEP_M` (1 cm) along that world axis in one env step of 12.5 ms, i.e.
0.8 m/s. `ee_twist[3:]` is ignored: MetaWorld keeps the gripper's orientation fixed. The gripper
command g in [0, 1] (1 = closed) becomes MetaWorld's grip effort 2g - 1 in [-1, 1].
Kinitro maps twist to `twist * 0.05 * 0.0125` before MetaWorld's own 1 cm scale, so the hand moves
at most 6 µm a step and no policy can reach anything in 500 steps (a converted scripted expert
succeeds 0/10); with the identity mapping it succeeds on nearly every seed. Non-finite actions
raise `ValueError` and are never stepped.

Episodes. The task (which objects, goal shown in the state) comes from
`metaworld.MT1(name, seed=0).train_tasks[0]`; the episode seed then draws the object and goal
positions through MetaWorld's own seeded path (`env.seeded_rand_vec`, `env.seed(seed)`) from the
same ranges MT1 samples its 50 goals from. `env.seed` alone changes nothing once a task is set
(MT1 tasks freeze the positions), and rebuilding MT1 per episode costs ~0.8 s; this way every seed
is its own episode and the same seed gives the same trajectory in any process.

Observation. Exactly Kinitro's keys: `rgb` (per camera, base64 of raw uint8 HxWx3 bytes),
`depth` ({}: not rendered), `proprio` (`ee_pos`, `ee_quat` x,y,z,w, `ee_vel_lin`, `ee_vel_ang` in
the world frame at the `endEffector` site, `gripper` 0 = open .. 1 = closed), `cam_intrinsics` /
`cam_extrinsics` (per camera 3x3 K and 4x4 world-from-camera T; {} without images), `extra`
(`{"state": [39 floats]}` with privileged state, goal included). Empty channels are `{}`, not
null, because Kinitro's `Observation` model types them as dicts and rejects null.

Cameras. MetaWorld's `corner` cameras are mounted upside down; images are rotated 180° so the
table is at the bottom, and `cam_extrinsics` describes that rolled camera in the OpenCV
convention (x right, y down, z forward; pixel centres at integer coordinates), so
`K @ inv(T) @ p_world` lands on the pixel as delivered.

Step cost. The MetaWorld env is stock but for `metaworld_fast.accelerate`: its per-step Python
(SciPy's quaternion conversion, by-name lookups, a walk over contacts, np.clip/np.hstack wrapping)
is replaced by code that returns the same bits, checked against stock MetaWorld step by step for
every env. A step costs 1.2-2.9x less (reach 212 -> 114 µs, pick-place 503 -> 172 µs here).

Rendering cost. Before the first render the model's off-screen multisampling, shadows and
reflections are switched off, and llvmpipe renders on the worker's own thread (LP_NUM_THREADS=0,
unless the operator set it): 6-8 ms a frame at 84x84 against ~100 ms at MuJoCo's defaults here.
The viewer's scene flags are left alone: toggling them makes later envs render black. The
cameras may draw simplified meshes (`EnvConfig.render_mesh_detail`, sim/mesh_detail.py; the
default 1.0 draws them whole): a frame's cost is its triangles, and at 0.2 a frame costs ~2.4x
less, within a stated tolerance of the full meshes' frame. One
`mujoco.Renderer` renders every camera in turn for every env of the task in the process
(`_SharedRenderers`): a second one renders no faster and costs ~150 MiB more.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import weakref

# Headless machines have no display; MuJoCo picks its GL backend when it is first imported.
os.environ.setdefault("MUJOCO_GL", "egl")
# Mesa's software rasterizer (llvmpipe, the EGL device of a machine without a GPU) otherwise starts
# a thread per core for every context. Rollout workers are already one per core, and on 84x84
# frames the hand-off costs more than it saves: single-threaded rendering measured 45-60 steps/s
# with both cameras against 27-48 with Mesa's threads here. GPU drivers ignore the variable.
os.environ.setdefault("LP_NUM_THREADS", "0")

import metaworld
import mujoco
import numpy as np

from kinitro_dagster.protocol import PolicyAction, encode_image
from kinitro_dagster.sim.base import EnvConfig, StepResult
from kinitro_dagster.sim.mesh_detail import render_model
from kinitro_dagster.sim.metaworld_fast import accelerate
from kinitro_dagster.sim.registry import METAWORLD_ENV_IDS, env_task_name, normalize_env_id

logger = logging.getLogger(__name__)

LINEAR_TWIST_SCALE = 1.0
"""`ee_twist[:3]` times this is MetaWorld's native xyz action (before clipping to [-1, 1])."""

METAWORLD_HAND_STEP_M = 0.01
"""How far MetaWorld moves the hand's target per env step for a native action of 1 (its `action_scale`)."""

METAWORLD_MAX_STEPS = 500
"""MetaWorld truncates at 500 steps and raises if stepped further."""

EE_SITE = "endEffector"
_TASK_SOURCE_SEED = 0  # MT1 seed of the task that configures the env; positions come from the episode seed
_SEED_LIMIT = 2**32  # numpy's seeding accepts 0 <= seed < 2**32 here


@functools.cache
def _metaworld_task(task_name: str) -> metaworld.Task:
    """One MT1 task of `task_name`: its data makes the state show the goal (ML1's would hide it)."""
    return metaworld.MT1(task_name, seed=_TASK_SOURCE_SEED).train_tasks[0]


def to_metaworld_action(action: PolicyAction) -> np.ndarray:
    """PolicyAction -> MetaWorld's [x, y, z, grip] in [-1, 1]; `ValueError` for malformed input."""
    if action.ee_twist is None:
        raise ValueError("MetaWorld takes action.continuous.ee_twist[6] and gripper[1], not joint_pos_target")
    try:
        # Python floats: this runs once per env step, and NumPy's per-call overhead on six
        # numbers costs more than the arithmetic.
        twist = np.asarray(action.ee_twist, dtype=np.float64)
        values = twist.tolist() if twist.shape == (6,) else None
        gripper = float(action.gripper)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"action is not numeric: {exc}") from None
    if values is None:
        raise ValueError(f"ee_twist must have 6 values, got shape {twist.shape}")
    if not (all(map(math.isfinite, values)) and math.isfinite(gripper)):
        raise ValueError(f"action is not finite: ee_twist={values}, gripper={gripper}")
    xyz = [min(max(v * LINEAR_TWIST_SCALE, -1.0), 1.0) for v in values[:3]]
    grip = 2.0 * min(max(gripper, 0.0), 1.0) - 1.0
    return np.array([*xyz, grip], dtype=np.float32)


def from_metaworld_action(native: np.ndarray) -> PolicyAction:
    """MetaWorld's [x, y, z, grip] (a scripted expert's output) -> PolicyAction; inverse of the above."""
    native = np.clip(np.asarray(native, dtype=np.float64), -1.0, 1.0)
    twist = np.zeros(6)
    twist[:3] = native[:3] / LINEAR_TWIST_SCALE
    return PolicyAction(ee_twist=twist, gripper=float((native[3] + 1.0) / 2.0))


def _use_fast_rendering(model: mujoco.MjModel, image_size: int) -> None:
    # Read when a renderer's GL context is made, so this must precede the first Renderer.
    model.vis.quality.offsamples = 0
    model.light_castshadow[:] = 0
    model.mat_reflectance[:] = 0
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, image_size)
    model.vis.global_.offheight = max(model.vis.global_.offheight, image_size)


# What Kinitro varies per MetaWorld episode (its metaworld_env.py), and by how much. Kinitro also
# draws object and target offsets and camera and light values but applies none of them.
PHYSICS_RANGES = {"friction": (0.8, 1.2), "damping": (0.9, 1.1)}
_UNUSED_DRAWS = 6  # Kinitro's object and target offsets, drawn first from the same generator


WATCH_CAMERA = "corner"
WATCH_SIZE = 240


def physics_factors(seed: int) -> dict[str, float]:
    """The friction and damping factors of the episode with `seed`: the draws Kinitro makes from
    `default_rng(seed)`, in its order. Every miner of a cycle plays each seed with the same ones."""
    rng = np.random.default_rng(seed)
    rng.random(_UNUSED_DRAWS)
    return {name: float(rng.uniform(low, high)) for name, (low, high) in PHYSICS_RANGES.items()}


class MetaWorldEnv:
    """One MetaWorld task with its renderers, reused across episodes (`reset(seed)` per episode)."""

    def __init__(self, env_id: str, config: EnvConfig | None = None) -> None:
        env_id = normalize_env_id(env_id)
        if env_id not in METAWORLD_ENV_IDS:
            raise ValueError(f"unknown MetaWorld env id {env_id!r}; known: {', '.join(METAWORLD_ENV_IDS)}")
        self.env_id = env_id
        self.config = config or EnvConfig()
        _check_config(self.config)
        self._task_name = env_task_name(env_id)
        task = _metaworld_task(self._task_name)
        # Bit-identical to stock MetaWorld, 1.2-2.9x faster a step (see metaworld_fast).
        self._env = accelerate(metaworld.env_dict.ALL_V3_ENVIRONMENTS[self._task_name]())
        self._env.set_task(task)
        # MetaWorld's own per-seed sampling of object/goal positions (see module docstring).
        self._env._freeze_rand_vec = False
        self._env.seeded_rand_vec = True
        self._model: mujoco.MjModel = self._env.model
        self._data: mujoco.MjData = self._env.data
        # Physics randomization scales these per episode, always from the model's own values.
        self._original_physics = (self._model.geom_friction.copy(), self._model.dof_damping.copy())
        self.physics: dict[str, float] = {}  # the current episode's factors (physics_factors)
        self._ee_site = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_SITE, EE_SITE)
        self._camera_ids = {name: self._camera_id(name) for name in self.config.cameras}
        self._renderer: mujoco.Renderer | None = None
        self._watcher: mujoco.Renderer | None = None  # replays' frames for people (watch_frame)
        self._scene_option = mujoco.MjvOption()
        self._cameras = {name: _fixed_camera(cid) for name, cid in self._camera_ids.items()}
        self._renderer_key: tuple | None = None
        if self.config.use_images:
            _use_fast_rendering(self._model, self.config.image_size)
            self._renderer_key = (self._task_name, self.config.image_size, self.config.render_mesh_detail)
            self._renderer = _RENDERERS.acquire(self._renderer_key, self._model)
        # Frees the GL context on close(), on garbage collection or at interpreter exit, whichever
        # comes first; freeing it later, during interpreter teardown, raises EGL errors.
        self._release = weakref.finalize(self, _release, self._renderer_key, self._env)
        self._intrinsics = {name: self._intrinsic_matrix(cid) for name, cid in self._camera_ids.items()}
        self._extrinsics: dict[str, list] = {}
        self._steps = 0
        self._success = False
        self._done = True  # until the first reset
        logger.info(
            "metaworld env ready env_id=%s images=%s cameras=%s image_size=%d privileged_state=%s",
            env_id, self.config.use_images, ",".join(self.config.cameras), self.config.image_size,
            self.config.privileged_state,
            extra={"env_id": env_id, "use_images": self.config.use_images},
        )  # fmt: skip

    # -- SimEnv -------------------------------------------------------------------------------

    def reset(self, seed: int) -> dict:
        if not isinstance(seed, int | np.integer) or not 0 <= int(seed) < _SEED_LIMIT:
            raise ValueError(f"episode seed must be an integer in [0, 2**32), got {seed!r}")
        self._env.seed(int(seed))
        # Before MetaWorld's reset, which already simulates (it settles the hand): the whole
        # episode, its first frame included, runs with this episode's physics.
        self.physics = self._set_physics(int(seed))
        state, _ = self._env.reset()
        self._place_sites()
        self._steps = 0
        self._success = False
        self._done = False
        if self._renderer is not None:
            self._extrinsics = {name: self._extrinsic_matrix(cid) for name, cid in self._camera_ids.items()}
        return self._observation(state)

    def _set_physics(self, seed: int) -> dict[str, float]:
        """This episode's friction and damping factors, applied to the model's original values
        (never compounding across episodes); {} with physics randomization off."""
        friction, damping = self._original_physics
        if not self.config.physics_randomization:
            self._model.geom_friction[:] = friction
            self._model.dof_damping[:] = damping
            return {}
        factors = physics_factors(seed)
        self._model.geom_friction[:] = friction * factors["friction"]
        self._model.dof_damping[:] = damping * factors["damping"]
        return factors

    def _place_sites(self) -> None:
        """Put the goal and target sites where this episode has them before the first frame.

        MetaWorld's reset moves them after its last forward pass, so until the first step the scene
        (and the first frame a policy sees) shows them where the previous episode had them.
        Recomputing positions from the unchanged state fixes that; mj_forward also refreshes the
        solver's warm start, which the next step would start from, so that is kept as it was: the
        episode plays exactly as without this.
        """
        warmstart = self._data.qacc_warmstart.copy()
        mujoco.mj_forward(self._model, self._data)
        self._data.qacc_warmstart[:] = warmstart

    def step(self, action: PolicyAction) -> StepResult:
        if self._done:
            raise RuntimeError(f"{self.env_id}: episode is over (or never started); call reset(seed) first")
        native = to_metaworld_action(action)
        state, reward, terminated, truncated, info = self._env.step(native)
        self._steps += 1
        self._success = self._success or bool(info.get("success", 0.0))
        self._done = bool(terminated or truncated) or self._steps >= self.config.max_steps
        return StepResult(
            observation=self._observation(state),
            reward=float(reward),
            success=self._success,
            done=self._done,
        )

    def task_config(self) -> dict:
        # Kinitro's meaning of the fields: env_name is the family, task_name the simulator's
        # task; task_id is MetaWorld's task index (an int, as Kinitro's miner template expects).
        return {
            "env_id": self.env_id,
            "env_name": "metaworld",
            "task_name": self._task_name,
            "task_id": list(metaworld.env_dict.ALL_V3_ENVIRONMENTS).index(self._task_name),
        }

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        self._release()
        self._renderer = None
        self._done = True

    # -- extras -------------------------------------------------------------------------------

    @property
    def steps(self) -> int:
        return self._steps

    def state(self) -> np.ndarray:
        """The current 39-d MetaWorld state with the goal shown (what a scripted expert reads)."""
        return self._env._get_obs()

    def render(self, camera: str) -> np.ndarray:
        """One frame (H, W, 3 uint8) from `camera` as delivered in `rgb`."""
        if self._renderer is None:
            raise RuntimeError(f"{self.env_id}: images are off (EnvConfig.use_images=False)")
        mujoco.mjv_updateScene(self._model, self._data, self._scene_option, None, self._cameras[camera],
                               mujoco.mjtCatBit.mjCAT_ALL, self._renderer.scene)  # fmt: skip
        # The corner cameras are mounted upside down: turn the frame the right way up.
        return np.ascontiguousarray(self._renderer.render()[::-1, ::-1])

    def watch_frame(self, size: int = WATCH_SIZE) -> np.ndarray:
        """The scene from the `corner` camera at `size`², for people watching a replay. A renderer of
        its own draws it: what the policy is sent, cameras or none, stays as the cycle sent it."""
        if self._watcher is None:
            self._watcher = mujoco.Renderer(self._model, size, size)
        self._watcher.update_scene(self._data, camera=self._camera_id(WATCH_CAMERA))
        return np.ascontiguousarray(self._watcher.render()[::-1, ::-1])

    def __enter__(self) -> MetaWorldEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _observation(self, state: np.ndarray) -> dict:
        rgb = {name: encode_image(self.render(name)) for name in self._camera_ids} if self._renderer else {}
        return {
            "rgb": rgb,
            "depth": {},
            "proprio": self._proprio(state),
            "cam_intrinsics": self._intrinsics if self._renderer else {},
            "cam_extrinsics": self._extrinsics if self._renderer else {},
            "extra": {"state": state.tolist()} if self.config.privileged_state else {},
        }

    def _proprio(self, state: np.ndarray) -> dict:
        site = self._data.site(self._ee_site)
        quat_wxyz = np.empty(4)
        mujoco.mju_mat2Quat(quat_wxyz, site.xmat)
        velocity = np.empty(6)  # [angular, linear], world-aligned, at the site
        mujoco.mj_objectVelocity(self._model, self._data, mujoco.mjtObj.mjOBJ_SITE, self._ee_site, velocity, 0)
        return {
            "ee_pos": site.xpos.tolist(),
            "ee_quat": [*quat_wxyz[1:].tolist(), float(quat_wxyz[0])],
            "ee_vel_lin": velocity[3:].tolist(),
            "ee_vel_ang": velocity[:3].tolist(),
            # state[3] is MetaWorld's finger opening, 1 = fully open.
            "gripper": [float(1.0 - state[3])],
        }

    def _camera_id(self, name: str) -> int:
        camera_id = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_CAMERA, name)
        if camera_id < 0:
            names = [mujoco.mj_id2name(self._model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(self._model.ncam)]
            raise ValueError(f"{self.env_id} has no camera {name!r}; cameras: {', '.join(names)}")
        return camera_id

    def _intrinsic_matrix(self, camera_id: int) -> list:
        size = self.config.image_size
        focal = 0.5 * size / math.tan(math.radians(self._model.cam_fovy[camera_id]) / 2)
        centre = (size - 1) / 2
        return [[focal, 0.0, centre], [0.0, focal, centre], [0.0, 0.0, 1.0]]

    def _extrinsic_matrix(self, camera_id: int) -> list:
        # MuJoCo's camera frame looks down -z with y up; the delivered image is turned 180°, so
        # the OpenCV frame of the delivered image is MuJoCo's with x and z negated.
        rotation = self._data.cam_xmat[camera_id].reshape(3, 3) @ np.diag([-1.0, 1.0, -1.0])
        transform = np.eye(4)
        transform[:3, :3] = rotation
        transform[:3, 3] = self._data.cam_xpos[camera_id]
        return transform.tolist()


def _fixed_camera(camera_id: int) -> mujoco.MjvCamera:
    camera = mujoco.MjvCamera()
    camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
    camera.fixedcamid = camera_id
    return camera


class _SharedRenderers:
    """One renderer per (task, image size, mesh detail) in a process, shared by its envs.

    A renderer's GL context holds what never changes while envs play: the meshes (simplified:
    mesh_detail) and textures of the task's model, identical in every env of the task. What a frame
    shows comes from the env's own model and data (`MetaWorldEnv.render` builds the scene from
    them), and a worker renders one frame at a time, so its envs can share one context. An llvmpipe
    context costs ~150 MiB: shared, a worker plays two miners with cameras in what one took alone.
    """

    def __init__(self) -> None:
        self._renderers: dict[tuple, tuple[mujoco.Renderer, int]] = {}

    def acquire(self, key: tuple, model: mujoco.MjModel) -> mujoco.Renderer:
        renderer, users = self._renderers.get(key, (None, 0))
        if renderer is None:
            _, size, detail = key
            renderer = mujoco.Renderer(render_model(model, detail), size, size)
        self._renderers[key] = (renderer, users + 1)
        return renderer

    def release(self, key: tuple) -> None:
        renderer, users = self._renderers[key]
        if users > 1:
            self._renderers[key] = (renderer, users - 1)
        else:
            del self._renderers[key]
            renderer.close()


_RENDERERS = _SharedRenderers()


def _release(renderer_key: tuple | None, env: metaworld.SawyerXYZEnv) -> None:
    if renderer_key is not None:
        _RENDERERS.release(renderer_key)
    env.close()


def _check_config(config: EnvConfig) -> None:
    if not 1 <= config.max_steps <= METAWORLD_MAX_STEPS:
        raise ValueError(f"max_steps must be in [1, {METAWORLD_MAX_STEPS}] for MetaWorld, got {config.max_steps}")
    if config.use_images and (config.image_size < 1 or not config.cameras):
        raise ValueError("with use_images, image_size must be positive and cameras non-empty")
    if not 0 < config.render_mesh_detail <= 1:
        raise ValueError(f"render_mesh_detail must be in (0, 1], got {config.render_mesh_detail}")
