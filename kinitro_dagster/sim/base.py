"""What every simulated environment offers the rollout loop (DESIGN §5, §6).

An env turns a seed into one deterministic episode: `reset(seed)` returns the first observation,
`step(action)` advances it. Observations are already in the policy protocol's wire form (a
JSON-ready dict with exactly the keys of Kinitro's `Observation`), so the rollout loop sends them
as they are. Actions arrive as `PolicyAction`, the env-independent form of the protocol's
`continuous.ee_twist` and `continuous.gripper` channels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Protocol

from kinitro_dagster.protocol import ObservationRequest, PolicyAction
from kinitro_dagster.settings import executor_default
from kinitro_dagster.sim.registry import all_env_ids, env_family, family_of, normalize_env_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnvConfig:
    max_steps: int = 500
    use_images: bool = True
    cameras: tuple[str, ...] = ("corner", "corner2")  # MetaWorld's; genesis renders its one `ego` camera
    depth: bool = True  # depth maps where the env renders them (genesis's ego camera; MetaWorld renders none)
    image_size: int = 84
    # Fraction of each large mesh's triangles the cameras draw (sim/mesh_detail.py); 1.0: full meshes.
    render_mesh_detail: float = executor_default("render_mesh_detail")
    privileged_state: bool = False  # put MetaWorld's 39-d state (goal visible) in obs["extra"]["state"]
    # Per-episode physics drawn from the seed (friction, damping: metaworld.PHYSICS_RANGES).
    physics_randomization: bool = executor_default("physics_randomization")
    # Success is latched, so steps after the first success cannot change the outcome; ending the
    # episode there saves most of a good policy's time. Off: every episode runs max_steps.
    stop_on_success: bool = True


def observed_config(env_id: str, config: EnvConfig, request: ObservationRequest | None) -> EnvConfig:
    """`config` narrowed to what a policy declared it reads (protocol: "Observation negotiation").

    Cameras it does not read are not rendered; with none of the env's cameras requested the env
    renders nothing. A declaration never adds what `config` turned off (images, depth).
    """
    if request is None or not config.use_images:
        return config
    offered = family_of(env_id).cameras
    unknown = set(request.cameras or ()) - set(offered)
    if unknown:
        logger.warning("a policy asked for cameras %s, which %s does not have (it has %s)",
                       sorted(unknown), env_id, ", ".join(offered))  # fmt: skip
    if request.cameras is None:
        return replace(config, depth=config.depth and request.depth)
    if not set(offered) & set(request.cameras):
        return replace(config, use_images=False, depth=False)
    # MetaWorld's cameras are the config's list; a family with one fixed camera keeps its list.
    cameras = tuple(c for c in config.cameras if c in request.cameras) or config.cameras
    return replace(config, cameras=cameras, depth=config.depth and request.depth)


@dataclass(frozen=True)
class StepResult:
    observation: dict  # JSON-ready protocol Observation
    reward: float
    success: bool  # latched: stays True once reached within the episode
    done: bool  # True at max_steps


class SimEnv(Protocol):
    env_id: str
    config: EnvConfig

    def reset(self, seed: int) -> dict: ...

    def step(self, action: PolicyAction) -> StepResult: ...

    def task_config(self) -> dict: ...

    def close(self) -> None: ...


def make_env(env_id: str, config: EnvConfig | None = None) -> SimEnv:
    """Build the env for `env_id` with its family's class (the registry's entry point)."""
    try:
        family = family_of(env_id)
    except ValueError:
        known = ", ".join(all_env_ids())
        raise ValueError(f"no simulator for env id {env_id!r} (family {env_family(env_id)!r}); "
                         f"known env ids: {known}") from None
    return family.env_class()(normalize_env_id(env_id), config)
