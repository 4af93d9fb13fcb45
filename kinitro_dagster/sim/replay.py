"""Replaying one recorded episode: the same env, seed and settings against the same policy snapshot,
with frames a person can watch.

The policy is sent exactly what the cycle sent (cameras only if the cycle had them); the frames
written are drawn beside that, from the env's watch camera (`MetaWorldEnv.watch_frame`), or for a
family without one from the first camera the policy was sent. A replay is a check: its outcome
(success, steps, reward, error kind) is compared with the recorded row, and any difference is named.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kinitro_dagster.miners.deployments import LocalDeployment
from kinitro_dagster.miners.policy_client import PolicyClient
from kinitro_dagster.protocol import PolicyAction
from kinitro_dagster.settings import state_dir
from kinitro_dagster.sim.base import EnvConfig, SimEnv, StepResult, make_env, observed_config
from kinitro_dagster.sim.episode import run_episode
from kinitro_dagster.warehouse.records import CommitmentRecord, CommitmentStatus, CycleConfiguration, EpisodeRecord

log = logging.getLogger(__name__)

ANIMATION_FPS = 20  # MetaWorld's control rate is 80 Hz: a replay plays at a quarter of real time
ANIMATION_MAX_FRAMES = 250  # longer episodes keep every k-th frame in the GIF (the PNGs keep all)


@dataclass(frozen=True)
class Replay:
    recorded: EpisodeRecord
    replayed: EpisodeRecord
    frames: list[Path]  # one PNG per observation: the reset's, then one per step
    animation: Path  # GIF
    thumbnail: Path  # PNG: the frame of the first success, else the last
    mismatches: list[str] = field(default_factory=list)

    @property
    def reproduced(self) -> bool:
        return not self.mismatches


class ReplayError(ValueError):
    """The episode cannot be replayed as recorded; the message says why and what to do."""


@dataclass(frozen=True)
class RecordedEpisode:
    cycle_key: str
    env_id: str
    configuration: CycleConfiguration
    commitment: CommitmentRecord
    episode: EpisodeRecord


def find_recorded(store: Any, cycle_key: str, env_id: str, uid: int, episode: int) -> RecordedEpisode:
    """The row of `episode` of `uid` on `env_id` in cycle `cycle_key`, with what replaying it needs,
    from a `Warehouse`; ReplayError naming what is missing."""
    cycle = store.get_cycle(cycle_key)
    if cycle is None:
        raise ReplayError(f"no evaluation cycle {cycle_key}: `kinitro db status` lists the recorded ones")
    if cycle.config is None:
        raise ReplayError(f"cycle {cycle_key} recorded no configuration (opened before revision 0003): its episode "
                          "settings are unknown, so it cannot be replayed as it ran")
    rows = {(r.uid, r.episode): r for r in store.episodes(cycle_key, env_id)}
    if (uid, episode) not in rows:
        played = sorted({u for u, _ in rows})
        raise ReplayError(f"cycle {cycle_key} has no episode {episode} of uid {uid} on {env_id} "
                          f"(uids with episodes there: {played or 'none'})")
    commitment = next((c for c in store.commitments(cycle_key) if c.uid == uid), None)
    if commitment is None or commitment.status is not CommitmentStatus.OK or not commitment.repo:
        raise ReplayError(f"uid {uid}'s commitment in cycle {cycle_key} names no policy snapshot to replay")
    return RecordedEpisode(cycle_key, env_id, cycle.config, commitment, rows[(uid, episode)])


def check_snapshot(recorded: RecordedEpisode, content_hash: str) -> None:
    """Refuse a snapshot whose files are not the ones the cycle evaluated (ReplayError)."""
    commitment = recorded.commitment
    if commitment.content_hash and content_hash != commitment.content_hash:
        raise ReplayError(f"{commitment.repo}@{commitment.revision} now hashes {content_hash}, not the "
                          f"{commitment.content_hash} the cycle evaluated: not the same policy snapshot")


def replay_dir(cycle_key: str, env_id: str, uid: int, episode: int) -> Path:
    """Where a replay's files go by default: `<state dir>/replays/<cycle>/<env, / as .>/<uid>/<episode>`."""
    return state_dir() / "replays" / cycle_key / env_id.replace("/", ".") / str(uid) / str(episode)


def env_config_of(cycle: CycleConfiguration) -> EnvConfig:
    """The episode settings a cycle recorded, as its episode runs apply them."""
    return EnvConfig(max_steps=cycle.max_timesteps, use_images=cycle.use_images,
                     privileged_state=cycle.privileged_state, physics_randomization=cycle.physics_randomization,
                     render_mesh_detail=cycle.render_mesh_detail)


def mismatches(recorded: EpisodeRecord, replayed: EpisodeRecord) -> list[str]:
    """What differs between a recorded episode and its replay (wall time and latency are not outcomes)."""
    found = []
    for name in ("seed", "success", "steps", "total_reward", "error_kind"):
        if getattr(recorded, name) != getattr(replayed, name):
            found.append(f"{name}: recorded {getattr(recorded, name)!r}, replayed {getattr(replayed, name)!r}")
    return found


def replay_episode(
    env_id: str,
    cycle: CycleConfiguration,
    recorded: EpisodeRecord,
    policy_dir: Path,
    out_dir: Path,
    *,
    python: str,
    warmup_timeout: float,
    env_factory: Callable[[str, EnvConfig], SimEnv] = make_env,
) -> Replay:
    """Play `recorded` again (its seed, the cycle's settings) against the policy in `policy_dir`, served
    as a local subprocess by `python`; write its frames, a GIF and a thumbnail under `out_dir`. The
    policy is sent what the cycle sent it: the cameras its `/health` declares it reads."""
    with LocalDeployment(policy_dir, python=python, warmup_timeout=warmup_timeout) as server, \
            PolicyClient(server.base_url, action_timeout=cycle.action_timeout) as client:
        watcher = WatchingEnv(env_factory(env_id, observed_config(env_id, env_config_of(cycle), server.observation)))
        try:
            replayed = run_episode(watcher, client, uid=recorded.uid, episode=recorded.episode, seed=recorded.seed,
                                   eval_timeout=cycle.eval_timeout)
        finally:
            watcher.close()
    frames, animation, thumbnail = write_frames(watcher.frames, out_dir, watcher.first_success)
    found = mismatches(recorded, replayed)
    log.info("episode replayed", extra={"env_id": env_id, "uid": recorded.uid, "episode": recorded.episode,
                                        "reproduced": not found, "frames": len(frames)})
    return Replay(recorded=recorded, replayed=replayed, frames=frames, animation=animation, thumbnail=thumbnail,
                  mismatches=found)


class WatchingEnv:
    """A SimEnv that keeps a frame of every observation it returns (the policy sees no difference)."""

    def __init__(self, env: SimEnv) -> None:
        self.env, self.env_id, self.config = env, env.env_id, env.config  # type: ignore[attr-defined]
        self.frames: list[np.ndarray] = []
        self.first_success: int | None = None  # index into frames

    def reset(self, seed: int) -> dict:
        observation = self.env.reset(seed)
        self.frames = [self._frame(observation)]
        self.first_success = None
        return observation

    def step(self, action: PolicyAction) -> StepResult:
        result = self.env.step(action)
        self.frames.append(self._frame(result.observation))
        if result.success and self.first_success is None:
            self.first_success = len(self.frames) - 1
        return result

    def task_config(self) -> dict:
        return self.env.task_config()

    def close(self) -> None:
        self.env.close()

    def _frame(self, observation: dict) -> np.ndarray:
        watch = getattr(self.env, "watch_frame", None)
        if watch is not None:
            return watch()
        for image in observation.get("rgb", {}).values():  # the first camera the policy is sent
            return np.frombuffer(base64.b64decode(image["data"]), dtype=image["dtype"]).reshape(image["shape"])
        raise ValueError(f"{self.env_id} has no watch camera, and the cycle sent no images: nothing to draw "
                         "frames from (replay a cycle that ran with KINITRO_EXECUTOR_USE_IMAGES=true)")


def write_frames(frames: list[np.ndarray], out_dir: Path, highlight: int | None) -> tuple[list[Path], Path, Path]:
    from PIL import Image

    frame_dir = out_dir / "frames"
    frame_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, pixels in enumerate(frames):
        paths.append(frame_dir / f"step_{i:03d}.png")
        Image.fromarray(pixels).save(paths[-1])
    every = max(1, -(-len(frames) // ANIMATION_MAX_FRAMES))
    images = [Image.fromarray(pixels) for pixels in frames[::every]]
    animation = out_dir / "episode.gif"
    images[0].save(animation, save_all=True, append_images=images[1:], duration=1000 * every // ANIMATION_FPS,
                   loop=0)
    thumbnail = out_dir / "thumbnail.png"
    Image.fromarray(frames[highlight if highlight is not None else -1]).save(thumbnail)
    return paths, animation, thumbnail
