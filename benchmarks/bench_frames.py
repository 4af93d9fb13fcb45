"""What a step with cameras costs the evaluator, before and after this work; one JSON line.

    MUJOCO_GL=egl python benchmarks/bench_frames.py [--rounds 3] [--episodes 1] [--save]

On metaworld/pick-place-v3 (the Sawyer arm is the same in every env), both cameras at 84x84, the
same seeds and random actions in every mode, this process pinned to one core (a rollout worker's)
and the policy server on the other, over a Unix socket (docker mode's transport):

- `frame_ms`: one camera's frame (scene update, render, readback), full and simplified meshes
  (`simplified_detail`, KINITRO_EXECUTOR_RENDER_MESH_DETAIL=0.2; the default is 1.0, the full ones).
- `bare_steps_per_s`: MetaWorld's env (with our exact fast paths) plus a renderer drawing both
  cameras at the detail, no wrapper, no encoding, no HTTP: the simulator and renderer alone.
- `end_to_end_steps_per_s`: `evaluate_partition`, the evaluator as it plays a partition: one
  worker pinned to the env core playing `miners_per_worker` miners at once (the default with
  cameras), each a FastAPI template policy (benchmarks/policies/trivial) on the other core, every
  frame base64-encoded and sent. `default`: this code's defaults; `simplified`: the same at 0.2;
  `before`: one miner a worker with cameras, as before the shared renderer.
- `end_to_end_over_bare` (target >= 0.8), `gain_over_before`, and their `simplified_` twins: the
  end-to-end rate over the bare rate at the same detail, and over `before`. `frame_path_gain`:
  bare, simplified over full meshes. `one_miner_*`: a single miner played alone (`run_episode`),
  the env core idle while its policy answers: what interleaving recovers.
- `proprio_only_steps_per_s` / `all_cameras_steps_per_s`: in the same rounds, the same partition of
  policies whose /health declares they read no camera (benchmarks/policies/proprio_only: nothing is
  rendered for them) and of policies that declare nothing (they get every camera).
- `frame_difference`: the simplified meshes' frames against the full meshes', as
  tests/sim/test_mesh_detail.py bounds them.

Rounds alternate the modes; rates are each mode's best round, ratios the median of per-round ratios.
`--save` also writes the line to <state dir>/benchmarks/frames.json, where `kinitro plan` reads
this host's rates.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("LP_NUM_THREADS", "0")

import mujoco
import numpy as np
from bench_rollout import raw_metaworld_env

from kinitro_dagster.miners.deployments import LocalDeployment, start_all
from kinitro_dagster.miners.policy_client import PolicyClient
from kinitro_dagster.settings import state_dir
from kinitro_dagster.sim.base import EnvConfig, observed_config
from kinitro_dagster.sim.episode import MinerTarget, run_episode
from kinitro_dagster.sim.mesh_detail import SIMPLIFIED_DETAIL, render_model
from kinitro_dagster.sim.metaworld import MetaWorldEnv, _fixed_camera, _use_fast_rendering
from kinitro_dagster.sim.metaworld_fast import accelerate
from kinitro_dagster.sim.workers import default_miners_per_worker, evaluate_partition, usable_cores

ENV_ID = "metaworld/pick-place-v3"
STEPS = 500
CAMERAS = ("corner", "corner2")
POLICIES = Path(__file__).resolve().parent / "policies"
DEFAULT_DETAIL = EnvConfig().render_mesh_detail
TARGET_END_TO_END_OVER_BARE = 0.8


def config(detail: float) -> EnvConfig:
    return EnvConfig(max_steps=STEPS, stop_on_success=False, render_mesh_detail=detail)


def bare_rate(detail: float, seeds: list[int], actions: np.ndarray) -> float:
    """Steps/s of MetaWorld (fast paths) plus both cameras' frames at `detail`: no wrapper, no HTTP."""
    env = accelerate(raw_metaworld_env(ENV_ID))
    _use_fast_rendering(env.model, 84)
    renderer = mujoco.Renderer(render_model(env.model, detail), 84, 84)
    option = mujoco.MjvOption()
    cameras = [_fixed_camera(env.model.camera(name).id) for name in CAMERAS]

    def frames() -> None:
        for camera in cameras:
            mujoco.mjv_updateScene(env.model, env.data, option, None, camera, mujoco.mjtCatBit.mjCAT_ALL,
                                   renderer.scene)  # fmt: skip
            renderer.render()

    steps, wall = 0, 0.0
    for seed in seeds:
        env.seed(seed)
        env.reset()
        frames()
        started = time.perf_counter()
        for action in actions:
            env.step(action)
            frames()
        wall += time.perf_counter() - started
        steps += len(actions)
    renderer.close()
    env.close()
    return steps / wall


def end_to_end_rate(env: MetaWorldEnv, client: PolicyClient, seeds: list[int]) -> float:
    steps, wall = 0, 0.0
    for i, seed in enumerate(seeds):
        record = run_episode(env, client, uid=0, episode=i, seed=seed)
        if record.error_kind:
            raise RuntimeError(f"benchmark episode failed: {record.error_kind}: {record.error}")
        steps += record.steps
        wall += record.wall_seconds
    return steps / wall


def partition_rate(deployments: list[LocalDeployment], seeds: list[int], detail: float, cpus: frozenset[int]) -> float:
    """Steps/s of `evaluate_partition` playing these miners at once in one worker pinned to `cpus`
    (the evaluator as it runs a partition): all steps over the slowest miner's episode wall time."""
    targets = [MinerTarget(uid, d.base_url, d.pid, d.observation) for uid, d in enumerate(deployments)]
    records = evaluate_partition(ENV_ID, targets, seeds, config(detail), max_workers=1,
                                 miners_per_worker=len(targets), worker_cpus=cpus)  # fmt: skip
    failed = [r for r in records if r.error_kind]
    if failed:
        raise RuntimeError(f"benchmark episode failed: {failed[0].error_kind}: {failed[0].error}")
    return sum(r.steps for r in records) / max(sum(r.wall_seconds for r in records if r.uid == t.uid) for t in targets)


def gl_renderer(env: MetaWorldEnv) -> str:
    """The GL renderer drawing `env`'s frames ("llvmpipe ...": the CPU; a GPU's name otherwise)."""
    from OpenGL import GL

    env._renderer._gl_context.make_current()
    return GL.glGetString(GL.GL_RENDERER).decode()


def frame_ms(env: MetaWorldEnv, n: int = 200) -> float:
    env.reset(0)
    env.render(CAMERAS[0])
    started = time.perf_counter()
    for _ in range(n):
        env.render(CAMERAS[0])
    return (time.perf_counter() - started) / n * 1e3


def frame_difference(seeds: list[int], actions: np.ndarray) -> dict[str, float]:
    """Both cameras over 40 steps of each seed, the simplified meshes against the full ones."""
    stacks = []
    for detail in (1.0, SIMPLIFIED_DETAIL):
        with MetaWorldEnv(ENV_ID, config(detail)) as env:
            frames = []
            for seed in seeds:
                env.reset(seed)
                for action in actions[:40]:
                    env._env.step(action)
                    frames += [env.render(camera) for camera in CAMERAS]
            stacks.append(np.array(frames).astype(int))
    difference = np.abs(stacks[0] - stacks[1])
    return {"mean_abs": round(float(difference.mean()), 3),
            "changed_over_32": round(float((difference.max(axis=-1) > 32).mean()), 4)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=1, help="500-step episodes per round and mode")
    parser.add_argument("--save", action="store_true", help="also write <state dir>/benchmarks/frames.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    warnings.filterwarnings("ignore")
    cpus = sorted(os.sched_getaffinity(0))
    env_cpu, policy_cpu = {cpus[0]}, frozenset(cpus[1:2] or cpus[:1])
    seeds = [2000 + i for i in range(args.episodes)]
    actions = np.random.default_rng(0).uniform(-1, 1, size=(STEPS, 4)).astype(np.float32)

    per_worker = default_miners_per_worker(config(DEFAULT_DETAIL))
    templates = [LocalDeployment(POLICIES / "trivial", cpus=policy_cpu, transport="unix") for _ in range(per_worker)]
    proprio = [LocalDeployment(POLICIES / "proprio_only", cpus=policy_cpu, transport="unix") for _ in range(per_worker)]
    errors = start_all([*templates, *proprio])
    if any(errors):
        raise SystemExit(f"benchmark policy failed to start: {next(e for e in errors if e)}")
    # What the evaluator builds for the proprio-only policy, from its /health declaration.
    if observed_config(ENV_ID, config(DEFAULT_DETAIL), proprio[0].observation).use_images:
        raise SystemExit(f"the proprio-only policy's declaration was not applied: {proprio[0].observation}")
    cores = usable_cores()
    os.sched_setaffinity(0, env_cpu)
    rates: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {}
    try:
        envs = {detail: MetaWorldEnv(ENV_ID, config(detail)) for detail in (1.0, SIMPLIFIED_DETAIL)}
        frame_cost = {detail: round(frame_ms(env), 3) for detail, env in envs.items()}
        renderer = gl_renderer(envs[SIMPLIFIED_DETAIL])
        with PolicyClient(templates[0].base_url) as client:
            for env in envs.values():
                end_to_end_rate(env, client, seeds[:1])  # warm-up: connection, GL state
            for _ in range(args.rounds):
                round_rates = {
                    "bare": bare_rate(DEFAULT_DETAIL, seeds, actions),
                    "bare_simplified": bare_rate(SIMPLIFIED_DETAIL, seeds, actions),
                    # One miner at a time, the env waiting while its policy computes.
                    "one_miner": end_to_end_rate(envs[DEFAULT_DETAIL], client, seeds),
                    # The evaluator as it plays a partition: before (one miner a worker with cameras,
                    # a GL context per env), now (the defaults) and with the simplified meshes.
                    "partition_before": partition_rate(templates[:1], seeds, DEFAULT_DETAIL, env_cpu),
                    "partition": partition_rate(templates, seeds, DEFAULT_DETAIL, env_cpu),
                    "partition_simplified": partition_rate(templates, seeds, SIMPLIFIED_DETAIL, env_cpu),
                    "partition_proprio_only": partition_rate(proprio, seeds, DEFAULT_DETAIL, env_cpu),
                }
                for name, rate in round_rates.items():
                    rates.setdefault(name, []).append(rate)
                for name, (over, under) in {
                    "end_to_end_over_bare": ("partition", "bare"),
                    "simplified_end_to_end_over_bare": ("partition_simplified", "bare_simplified"),
                    "one_miner_over_bare": ("one_miner", "bare"),
                    "gain_over_before": ("partition", "partition_before"),
                    "simplified_gain_over_before": ("partition_simplified", "partition_before"),
                    "frame_path_gain": ("bare_simplified", "bare"),
                    "all_cameras_over_proprio_only": ("partition", "partition_proprio_only"),
                }.items():
                    ratios.setdefault(name, []).append(round_rates[over] / round_rates[under])
        for env in envs.values():
            env.close()
        difference = frame_difference(seeds[:1], actions)
    finally:
        for deployment in (*templates, *proprio):
            deployment.stop()

    best = {name: round(max(values), 1) for name, values in rates.items()}
    medians = {name: round(statistics.median(values), 3) for name, values in ratios.items()}
    result = {
        "benchmark": "frames",
        "env_id": ENV_ID,
        "cores": cores,
        "renderer": renderer,
        "image_size": 84,
        "cameras": list(CAMERAS),
        "render_mesh_detail": DEFAULT_DETAIL,
        "simplified_detail": SIMPLIFIED_DETAIL,
        "miners_per_worker": per_worker,
        "frame_ms": {"full_meshes": frame_cost[1.0], "simplified": frame_cost[SIMPLIFIED_DETAIL]},
        "bare_steps_per_s": {"default": best["bare"], "simplified": best["bare_simplified"]},
        "one_miner_steps_per_s": best["one_miner"],
        "end_to_end_steps_per_s": {"before": best["partition_before"], "default": best["partition"],
                                   "simplified": best["partition_simplified"]},
        "all_cameras_steps_per_s": best["partition"],
        "proprio_only_steps_per_s": best["partition_proprio_only"],
        **medians,
        "frame_difference": difference,
        "targets_met": {"end_to_end_over_bare>=0.8": medians["end_to_end_over_bare"] >= TARGET_END_TO_END_OVER_BARE},
        "rounds": args.rounds,
        "episodes_per_round": args.episodes,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    line = json.dumps(result)
    print(line)
    if args.save:
        path = state_dir() / "benchmarks" / "frames.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(line + "\n")
        print(f"saved to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
