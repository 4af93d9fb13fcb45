"""Kinitro's evaluation envs as Gymnasium envs: train on exactly what the evaluator plays and sends.

`KinitroEnv` is the evaluator's own env (`sim.make_env`, the same `EnvConfig`) behind Gymnasium's
API. For the same episode seed and the same actions it plays the same episode and returns the
observation the evaluator sends in `/act`, bit for bit (DESIGN §5, §6; tests/test_gym.py pins it).

Ids. Kinitro's env id `family/task-vN` is the Gymnasium id `kinitro/family-task-vN`:
`metaworld/reach-v3` is `kinitro/metaworld-reach-v3`, `metaworld/pick-place-v3` is
`kinitro/metaworld-pick-place-v3`. Only Kinitro's ids are registered, not our older aliases.

Making one. Gymnasium 1.x loads no plugin entry points (it dropped the `gymnasium.envs` entry
point group in 1.0), so an id either names the module that registers it, which Gymnasium then
imports, or the module is imported first:

    env = gymnasium.make("kinitro_dagster.gym:kinitro/metaworld-reach-v3")
    # or: import kinitro_dagster.gym; env = gymnasium.make("kinitro/metaworld-reach-v3")

Importing this module registers every id (`register_envs`, idempotent); it loads neither MuJoCo
nor MetaWorld until an env is made. Keyword arguments of `make` are the evaluator's episode knobs,
with the evaluator's defaults (`EnvConfig`): `max_steps` (500), `use_images` (True) and
`privileged_state` (False, as in production; True only on the demo track), `physics_randomization`
(True: each seed's friction and damping, as evaluated), plus `obs_format`
("wire" or "arrays") and `render_mode` (None or "rgb_array", the first camera's frame).

Observation. `obs_format="wire"` (default): the `obs` member of the evaluator's `/act` request as a
policy server decodes it, i.e. the JSON decoding of the very bytes the evaluator's client sends:
keys `rgb`, `depth`, `proprio`, `cam_intrinsics`, `cam_extrinsics`, `extra`; images as
`{"data": base64 of the raw bytes, "shape": [84, 84, 3], "dtype": "uint8"}`. Its space,
`WireObservation`, holds the wire dicts that decode into the arrays space. `obs_format="arrays"`:
the same observation decoded (`decode_observation`, which a policy server can use too): images as
uint8 HxWx3 arrays, every list as a float64 array, in a nested `spaces.Dict` without the channels
that are always empty with the env's knobs (`depth`; `rgb` and the camera matrices without images;
`extra` without privileged state), because Gymnasium allows no empty Dict.

Action. Either what a policy returns as `action` in its `/act` response,
`{"continuous": {"ee_twist": [6 numbers], "gripper": [1 number]}}` (NumPy values allowed), or a
flat array of 7, `[*ee_twist, gripper]` (`action_space`). Both go through the evaluator's own
parser (`parse_action`) after a JSON round trip, as over HTTP. Then (sim/metaworld.py):
`ee_twist[:3]` is MetaWorld's native xyz action, clipped to [-1, 1] (1 moves the hand's target
1 cm per step), `ee_twist[3:]` is ignored, `gripper` is clipped to [0, 1] (1 = closed). An action
the evaluator would refuse (wrong shape, non-finite, unknown key) raises `ValueError`; the evaluator
ends such an episode as a failure (`bad_action`).

Episodes. `reset(seed=s)` plays the episode the evaluator plays for episode seed `s` (the
evaluator's seeds are secret 31-bit integers, sim/seeds.py, so no miner can know which; any
integer in [0, 2**32) is an episode). `reset()` without a seed draws one in [0, 2**31) from the
env's generator, so `reset(seed=s)` followed by `reset()` calls is a reproducible sequence;
`info["episode_seed"]` says which episode is playing. As in the evaluator's rollout loop, the
episode ends at the first success (`terminated`, `info["success"]`) or after `max_steps` steps
(`truncated`); stepping on after either raises. `reward` is MetaWorld's; the evaluator scores
success only (and records the summed reward).

The humanoid (`kinitro/genesis-g1-v0`, sim/genesis_g1.py). Flat actions are `joint_pos_target`,
43 numbers in [-1, 1] in the wire's joint order (`HUMANOID_ACTION_SPACE`); a dict action is what a
policy returns. The arrays format decodes `rgb.ego` and `depth.ego` (with images), the proprio
(`base_pos`, `base_quat`, `base_vel`, `joint_pos`, `joint_vel`) and keeps `extra.task_prompt` and
`task_type` as text (`spaces.Text`). A fall ends the episode early as a failure: `terminated`, not
`truncated`. `render()` is the ego frame the last observation sent. Privileged state is refused
(its keys vary by task; production never sends it). Frames at 50 per second (2 physics steps of
10 ms an action).

Images are rendered with MuJoCo's fast settings (no multisampling, shadows or reflections) and
rotated 180° so the table is at the bottom; Kinitro renders at MuJoCo's default quality and flips
vertically only (mirrored left-right), so Kinitro-style frames are not what this evaluator sends.
Pixels are bit-identical when the same OpenGL implementation renders them (tests/test_gym.py:
Mesa's llvmpipe through MUJOCO_GL=egl, as on the evaluator's CPU hosts); a different one, a GPU's
driver say, may rasterize some pixels differently (not measured here).
"""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium
import numpy as np
import orjson
from gymnasium import spaces

from kinitro_dagster.miners.policy_client import dump_observation as _act_bytes  # the evaluator's encoder
from kinitro_dagster.protocol import OBSERVATION_KEYS, PolicyAction, PolicyError, encode_image, parse_action
from kinitro_dagster.sim.base import EnvConfig, make_env
from kinitro_dagster.sim.registry import ENV_IDS, env_family, validate_env_id

NAMESPACE = "kinitro"
ENTRY_POINT = "kinitro_dagster.gym:KinitroEnv"
OBS_FORMATS = ("wire", "arrays")
EVALUATOR_KNOBS = ("max_steps", "use_images", "privileged_state")
"""The `EnvConfig` fields the evaluator's settings set (the others are fixed in production)."""

ACTION_SIZE = 7  # MetaWorld: ee_twist[6], gripper[1]
HUMANOID_ACTION_SIZE = 43  # genesis/g1-v0: joint_pos_target[43]
_DRAWN_SEED_LIMIT = 2**31  # the evaluator's episode seeds are 31-bit (sim/seeds.py)
_STATE_SIZE = 39  # MetaWorld's state, in extra["state"] with privileged_state
# Frames per second of an env step: MetaWorld's is 5 physics steps of 2.5 ms, Genesis's 2 of 10 ms.
_RENDER_FPS = {"metaworld": 80, "genesis": 50}
_PROMPT_CHARSET = string.ascii_letters + string.digits + " .,'-"


def gym_id(env_id: str) -> str:
    """Kinitro's env id (or an alias) -> its Gymnasium id: `metaworld/reach-v3` -> `kinitro/metaworld-reach-v3`."""
    family, _, task = validate_env_id(env_id).partition("/")
    return f"{NAMESPACE}/{family}-{task}"


GYM_IDS: dict[str, str] = {gym_id(env_id): env_id for env_id in ENV_IDS}
"""Gymnasium id -> Kinitro env id, for every env of the registry."""


def register_envs() -> None:
    """Register every env of the registry under its Gymnasium id (again: no-op). Runs on import."""
    for gymnasium_id, env_id in GYM_IDS.items():
        if gymnasium_id not in gymnasium.registry:
            gymnasium.register(id=gymnasium_id, entry_point=ENTRY_POINT, kwargs={"env_id": env_id})


# -- observations ---------------------------------------------------------------------------------


def decode_image(image: Mapping[str, Any]) -> np.ndarray:
    """A wire image `{"data": base64, "shape", "dtype"}` -> its (writable) array."""
    raw = bytearray(base64.b64decode(image["data"], validate=True))
    return np.frombuffer(raw, dtype=np.dtype(image["dtype"])).reshape(image["shape"])


def decode_observation(wire: Mapping[str, Any]) -> dict:
    """A wire observation -> the same observation as arrays (images as sent, every list float64)."""
    images = {key: {name: decode_image(image) for name, image in wire[key].items()} for key in _IMAGE_CHANNELS}
    numbers = {key: {name: _decoded(value) for name, value in wire[key].items()} for key in _NUMBER_CHANNELS}
    merged = {**images, **numbers}
    return {key: merged[key] for key in OBSERVATION_KEYS}


def _decoded(value: Any) -> Any:
    """Numbers and lists of them as float64 arrays; text (the humanoid's prompt) as it is; dicts within."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return {name: _decoded(item) for name, item in value.items()}
    return np.asarray(value, dtype=np.float64)


def encode_observation(arrays: Mapping[str, Any]) -> dict:
    """The inverse of `decode_observation`; a channel left out is sent empty."""
    images = {
        key: {name: encode_image(image) for name, image in arrays.get(key, {}).items()} for key in _IMAGE_CHANNELS
    }
    numbers = {key: {name: _encoded(value) for name, value in arrays.get(key, {}).items()} for key in _NUMBER_CHANNELS}
    merged = {**images, **numbers}
    return {key: merged[key] for key in OBSERVATION_KEYS}


def _encoded(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return {name: _encoded(item) for name, item in value.items()}
    return np.asarray(value).tolist()


_IMAGE_CHANNELS = ("rgb", "depth")
_NUMBER_CHANNELS = ("proprio", "cam_intrinsics", "cam_extrinsics", "extra")


def array_observation_space(config: EnvConfig, family: str = "metaworld") -> spaces.Dict:
    """The space of decoded observations of a `family` env with `config`, keys in the wire's order.

    Gymnasium allows no empty Dict, so channels that are always empty with `config` are left out:
    `depth` (MetaWorld never renders it), `rgb` and the camera matrices without images, `extra`
    without privileged state (MetaWorld; the humanoid's always has its prompt).
    """
    size = config.image_size

    def real(*shape: int, low: float = -np.inf, high: float = np.inf, dtype: type = np.float64) -> spaces.Box:
        return spaces.Box(low, high, shape, dtype)

    if family == "genesis":
        if config.privileged_state:
            # Its keys vary by task (a destination only for place and push): no fixed space holds them.
            raise ValueError("the Gymnasium env of genesis/g1-v0 takes no privileged_state (production never sends "
                             "it); for the demo track's state use kinitro_dagster.sim.make_env")  # fmt: skip
        cameras = ("ego",) if config.use_images else ()
        channels = {
            "rgb": {name: spaces.Box(0, 255, (size, size, 3), np.uint8) for name in cameras},
            "depth": {name: real(size, size, low=0.0, dtype=np.float32) for name in cameras},
            "proprio": {"base_pos": real(3), "base_quat": real(4), "base_vel": real(6),
                        "joint_pos": real(HUMANOID_ACTION_SIZE), "joint_vel": real(HUMANOID_ACTION_SIZE)},
            "extra": {"task_prompt": spaces.Text(256, charset=_PROMPT_CHARSET),
                      "task_type": spaces.Text(16, charset=string.ascii_lowercase)},
        }  # fmt: skip
    else:
        cameras = config.cameras if config.use_images else ()
        channels = {
            "rgb": {name: spaces.Box(0, 255, (size, size, 3), np.uint8) for name in cameras},
            "proprio": {
                "ee_pos": real(3), "ee_quat": real(4), "ee_vel_lin": real(3), "ee_vel_ang": real(3),
                "gripper": real(1, low=0.0, high=1.0),
            },
            "cam_intrinsics": {name: real(3, 3) for name in cameras},
            "cam_extrinsics": {name: real(4, 4) for name in cameras},
            "extra": {"state": real(_STATE_SIZE)} if config.privileged_state else {},
        }  # fmt: skip
    # Pairs in the wire's key order, not a dict: spaces.Dict would sort a dict's keys.
    return spaces.Dict([(key, spaces.Dict(list(channels[key].items()))) for key in OBSERVATION_KEYS
                        if channels.get(key)])  # fmt: skip


def _in_space(wire: Mapping[str, Any], space: spaces.Dict) -> dict:
    """The decoded channels of `space` (the others are always empty)."""
    decoded = decode_observation(wire)
    return {key: decoded[key] for key in space.spaces}


class WireObservation(spaces.Space[dict]):
    """Wire observations: JSON-ready dicts with Kinitro's keys whose decoded form lies in `arrays`
    (and whose channels that `arrays` leaves out are empty)."""

    def __init__(self, arrays: spaces.Dict, seed: int | np.random.Generator | None = None) -> None:
        self.arrays = arrays
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def seed(self, seed: int | None = None) -> Any:
        return self.arrays.seed(seed)

    def sample(self, mask: Any = None, probability: Any = None) -> dict:
        return encode_observation(self.arrays.sample())

    def contains(self, x: Any) -> bool:
        if not isinstance(x, dict) or tuple(x) != OBSERVATION_KEYS:
            return False
        if any(x[key] for key in OBSERVATION_KEYS if key not in self.arrays.spaces):
            return False
        try:
            return self.arrays.contains(_in_space(x, self.arrays))
        except (KeyError, TypeError, ValueError, AttributeError):
            return False

    def __repr__(self) -> str:
        return f"WireObservation({self.arrays!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WireObservation) and self.arrays == other.arrays


# -- actions --------------------------------------------------------------------------------------

ACTION_SPACE = spaces.Box(
    low=np.array([-1.0] * 6 + [0.0], dtype=np.float32), high=np.ones(ACTION_SIZE, dtype=np.float32), dtype=np.float32
)
"""MetaWorld's flat actions `[*ee_twist, gripper]`: the range the env acts on (the evaluator clips beyond it)."""
HUMANOID_ACTION_SPACE = spaces.Box(-1.0, 1.0, (HUMANOID_ACTION_SIZE,), np.float32)
"""The humanoid's flat actions: `joint_pos_target`, one number a joint in the wire order, in [-1, 1]."""


def action_space_of(family: str) -> spaces.Box:
    return HUMANOID_ACTION_SPACE if family == "genesis" else ACTION_SPACE


def to_policy_action(action: Any, family: str = "metaworld") -> PolicyAction:
    """A wire action dict, or a flat array of `family`'s action space -> the `PolicyAction` the
    evaluator would step with."""
    if isinstance(action, Mapping):
        # Over HTTP the action is JSON: NumPy values become numbers, True stays a (refused) bool.
        response = json.loads(json.dumps({"action": action}, default=_json_value))
    else:
        flat = np.asarray(action, dtype=np.float64)
        size = action_space_of(family).shape[0]
        if flat.shape != (size,):
            layout = "joint_pos_target(43)" if family == "genesis" else "[*ee_twist(6), gripper(1)]"
            raise ValueError(f"a flat {family} action is {layout}, {size} numbers; got shape {flat.shape}")
        values = flat.tolist()
        continuous = ({"joint_pos_target": values} if family == "genesis"
                      else {"ee_twist": values[:6], "gripper": values[6:]})  # fmt: skip
        response = {"action": {"continuous": continuous}}
    try:
        return parse_action(response)
    except PolicyError as error:
        raise ValueError(
            f"the evaluator refuses this action and fails the episode ({error.kind}): {error.message}"
        ) from None


def _json_value(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"an action value of type {type(value).__name__} is not JSON (use numbers, lists or NumPy)")


# -- the env --------------------------------------------------------------------------------------


class KinitroEnv(gymnasium.Env[dict, Any]):
    """One of Kinitro's evaluation envs, episode for episode and bit for bit (see the module docstring)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": _RENDER_FPS["metaworld"]}

    def __init__(self, env_id: str, obs_format: str = "wire", render_mode: str | None = None, **knobs: Any) -> None:
        unknown = sorted(knobs.keys() - set(EVALUATOR_KNOBS))
        if unknown:
            raise TypeError(f"unknown option(s) {unknown}; the evaluator's episode knobs are {list(EVALUATOR_KNOBS)}")
        if obs_format not in OBS_FORMATS:
            raise ValueError(f"obs_format must be one of {list(OBS_FORMATS)}, got {obs_format!r}")
        config = EnvConfig(**knobs)
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if render_mode == "rgb_array" and not config.use_images:
            raise ValueError("render_mode='rgb_array' needs use_images=True (the frames are the first camera's)")
        self.env_id = validate_env_id(env_id)
        self.family = env_family(self.env_id)
        self.config = config
        self.obs_format = obs_format
        self.render_mode = render_mode
        # Frames come from the evaluator's renderer, which exists only with images.
        self.metadata = {**self.metadata, "render_modes": ["rgb_array"] if config.use_images else [],
                         "render_fps": _RENDER_FPS[self.family]}  # fmt: skip
        arrays = array_observation_space(config, self.family)
        self.observation_space = arrays if obs_format == "arrays" else WireObservation(arrays)
        self.action_space = action_space_of(self.family)
        self._env = make_env(self.env_id, config)
        self._frame: np.ndarray | None = None  # the humanoid's last ego frame (render)
        self._episode_seed: int | None = None
        self._steps = 0
        self._over = True  # until the first reset

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        if options:
            raise ValueError(f"{self.env_id} takes no reset options, got {sorted(options)}")
        super().reset(seed=seed)
        episode_seed = seed if seed is not None else int(self.np_random.integers(_DRAWN_SEED_LIMIT))
        observation = self._env.reset(episode_seed)
        self._episode_seed = int(episode_seed)
        self._steps = 0
        self._over = False
        info = {"episode_seed": self._episode_seed, "success": False, "steps": 0,
                "task_config": self._env.task_config()}  # fmt: skip
        return self._delivered(observation), info

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        if self._over:
            raise RuntimeError(f"{self.env_id}: the episode is over (or never started); call reset() first")
        result = self._env.step(to_policy_action(action, self.family))
        self._steps += 1
        # The evaluator's rollout loop: it stops at max_steps, and at the first success unless told not
        # to; an env may end an episode itself before (the humanoid's fall): terminated, a failure.
        ended_early = result.done and self._steps < self.config.max_steps
        terminated = (result.success and self.config.stop_on_success) or (ended_early and not result.success)
        truncated = result.done and not terminated
        self._over = terminated or truncated
        info = {"episode_seed": self._episode_seed, "success": result.success, "steps": self._steps}
        return self._delivered(result.observation), result.reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        if self.family == "genesis":  # its one camera's frame, as the last observation sent it
            return None if self._frame is None else self._frame.copy()
        return self._env.render(self.config.cameras[0])

    def close(self) -> None:
        self._env.close()
        super().close()

    def _delivered(self, observation: dict) -> dict:
        # Decoding the encoded bytes gives what a policy server reads, and a fresh dict each step
        # (the env reuses its camera matrices between steps).
        wire = orjson.loads(_act_bytes(observation))
        if self.family == "genesis" and wire["rgb"]:
            self._frame = decode_image(wire["rgb"]["ego"])
        return wire if self.obs_format == "wire" else _in_space(wire, self.observation_space)


register_envs()
