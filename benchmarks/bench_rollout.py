"""Rollout throughput against the budgets of DESIGN §11; prints one JSON line.

    MUJOCO_GL=egl python benchmarks/bench_rollout.py [--rounds 3] [--episodes 2]

All figures are on metaworld/reach-v3 with the same seeds, in one run:

- `raw_steps_per_s`: random actions straight into MetaWorld's own env (no wrapper, no render).
- `no_images_steps_per_s`: one miner end to end, `run_episode` with our env (no images) and the
  trivial template policy (benchmarks/policies/trivial: FastAPI + pydantic, as miners run it) over
  HTTP on loopback TCP. Target: >= 0.8 x raw. `no_images_unix_*`: the same server on a Unix socket.
- `with_images_steps_per_s`: the same with both cameras at 84x84; compared with MuJoCo's
  default-quality render rate (`default_quality_render_fps`, a fresh model, default vis settings,
  one 84x84 frame per call). Target: >= 8 x that rate.
- `aggregate_2_miners_steps_per_s`: two miners through `evaluate_partition` with two workers, i.e.
  two envs and two policy servers sharing this machine's cores (and `aggregate_4_miners_...`: four
  of each). `pipelined_2_miners_steps_per_s`: the same two miners with the envs' workers on one
  core and the two policy servers on the other, as when policies run on CPUs of their own (docker
  mode's limits): while one miner's policy computes, the env core steps the other miner's env.
  Compared with raw stepping on one core. Target: >= 0.8.
- Diagnostics that say where the time goes: our env wrapper alone (`env_wrapper_*`: action
  mapping and protocol observation, no HTTP), CPU per step of the evaluator (env + client, what the
  evaluator's cores pay when policies run on their own CPUs, as in docker mode), the round trip of
  one /act for the template server and for a bare ASGI server, and the client's own CPU per act.

The machine is shared, so raw and end-to-end are measured in alternating rounds and each ratio is
the median of its per-round ratios; rates are the best round (capacity, not interference).
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

import metaworld
import mujoco
import numpy as np

from kinitro_dagster.miners.deployments import LocalDeployment, start_all
from kinitro_dagster.miners.policy_client import PolicyClient
from kinitro_dagster.sim.base import EnvConfig, PolicyAction, make_env
from kinitro_dagster.sim.registry import env_task_name
from kinitro_dagster.sim.rollout import MinerTarget, evaluate_partition, run_episode, usable_cores

ENV_ID = "metaworld/reach-v3"
STEPS = 500
POLICIES = Path(__file__).resolve().parent / "policies"
NO_IMAGES = EnvConfig(max_steps=STEPS, use_images=False)
WITH_IMAGES = EnvConfig(max_steps=STEPS, use_images=True)  # both cameras, 84x84
TARGET_NO_IMAGES_OVER_RAW = 0.8
TARGET_IMAGES_OVER_DEFAULT_RENDER = 8.0


def raw_metaworld_env():
    """MetaWorld's env for the task, set up as our wrapper does (seeded positions), without it."""
    name = env_task_name(ENV_ID)
    env = metaworld.env_dict.ALL_V3_ENVIRONMENTS[name]()
    env.set_task(metaworld.MT1(name, seed=0).train_tasks[0])
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True
    return env


def run_raw(env, seeds: list[int], actions: np.ndarray) -> tuple[int, float, float]:
    steps, wall, cpu = 0, 0.0, 0.0
    for seed in seeds:
        env.seed(seed)
        env.reset()
        started, cpu_started = time.perf_counter(), time.process_time()
        for action in actions:
            env.step(action)
        wall += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
        steps += len(actions)
    return steps, wall, cpu


def run_wrapped(env, seeds: list[int], actions: np.ndarray) -> tuple[int, float, float]:
    """Our env (action mapping, protocol observation) with the same random actions, no HTTP."""
    policy_actions = [PolicyAction(ee_twist=np.r_[a[:3], 0.0, 0.0, 0.0], gripper=(a[3] + 1) / 2) for a in actions]
    steps, wall, cpu = 0, 0.0, 0.0
    for seed in seeds:
        env.reset(seed)
        started, cpu_started = time.perf_counter(), time.process_time()
        for action in policy_actions:
            env.step(action)
        wall += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
        steps += len(policy_actions)
    return steps, wall, cpu


def run_end_to_end(env, client: PolicyClient, seeds: list[int]) -> tuple[int, float, float, list[float]]:
    steps, wall, cpu, p50s = 0, 0.0, 0.0, []
    for i, seed in enumerate(seeds):
        cpu_started = time.process_time()
        record = run_episode(env, client, uid=0, episode=i, seed=seed)
        cpu += time.process_time() - cpu_started
        if record.error_kind:
            raise RuntimeError(f"benchmark episode failed: {record.error_kind}: {record.error}")
        steps += record.steps
        wall += record.wall_seconds
        p50s.append(record.latency_p50_ms)
    return steps, wall, cpu, p50s


def profile_episode(env, client: PolicyClient, seed: int) -> None:
    """Where one end-to-end episode's wall time goes, by function (stderr, not part of the JSON)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    run_episode(env, client, uid=0, episode=0, seed=seed)
    profiler.disable()
    pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(15)


def default_quality_render_fps(frames: int = 40) -> float:
    """Frames/s of a fresh model with MuJoCo's default vis quality (multisampling, shadows, reflections)."""
    env = raw_metaworld_env()
    env.seed(0)
    env.reset()
    renderer = mujoco.Renderer(env.model, 84, 84)
    cameras = [mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_CAMERA, c) for c in ("corner", "corner2")]
    renderer.update_scene(env.data, camera=cameras[0])
    renderer.render()  # the first frame builds GL state
    started = time.perf_counter()
    for i in range(frames):
        renderer.update_scene(env.data, camera=cameras[i % 2])
        renderer.render()
    fps = frames / (time.perf_counter() - started)
    renderer.close()
    env.close()
    return fps


def act_round_trip(deployment: LocalDeployment, observation: dict, n: int = 2000) -> tuple[float, float]:
    """Median wall µs of one /act and the client's own CPU µs per act (syscalls included)."""
    with PolicyClient(deployment.base_url) as client:
        client.reset({"env_id": ENV_ID})
        for _ in range(200):
            client.act(observation)
        times = []
        cpu_started = time.process_time()
        for _ in range(n):
            started = time.perf_counter()
            client.act(observation)
            times.append(time.perf_counter() - started)
        cpu = time.process_time() - cpu_started
    return statistics.median(times) * 1e6, cpu / n * 1e6


def aggregate_rate(
    deployments: list[LocalDeployment], seeds: list[int], worker_cpus: frozenset[int] | None = None
) -> float:
    """Steps/s of miners evaluated side by side, one worker each (each miner's own rate, summed)."""
    targets = [MinerTarget(uid, d.base_url, d.pid) for uid, d in enumerate(deployments)]
    records = evaluate_partition(ENV_ID, targets, seeds, NO_IMAGES, max_workers=len(targets), worker_cpus=worker_cpus)
    failed = [r for r in records if r.error_kind]
    if failed:
        raise RuntimeError(f"benchmark episode failed: {failed[0].error_kind}: {failed[0].error}")
    rate = 0.0
    for target in targets:
        mine = [r for r in records if r.uid == target.uid]
        rate += sum(r.steps for r in mine) / sum(r.wall_seconds for r in mine)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating raw / end-to-end rounds")
    parser.add_argument("--episodes", type=int, default=2, help="500-step episodes per round and mode")
    parser.add_argument(
        "--profile", action="store_true", help="also print a cProfile of one end-to-end episode to stderr"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    warnings.filterwarnings("ignore")
    load_start = os.getloadavg()[0]
    seeds = [1000 + i for i in range(args.episodes)]
    actions = np.random.default_rng(0).uniform(-1, 1, size=(STEPS, 4)).astype(np.float32)

    render_fps = default_quality_render_fps()  # before any env switches its own model to fast rendering
    trivial = [LocalDeployment(POLICIES / "trivial") for _ in range(4)]
    bare = LocalDeployment(POLICIES / "bare_asgi")
    unix = LocalDeployment(POLICIES / "trivial", transport="unix")
    pipelined = usable_cores() >= 2
    env_cpus, policy_cpus = (
        frozenset(sorted(os.sched_getaffinity(0))[:1]),
        frozenset(sorted(os.sched_getaffinity(0))[1:2]),
    )
    pinned = [LocalDeployment(POLICIES / "trivial", cpus=policy_cpus) for _ in range(2)] if pipelined else []
    errors = start_all([*trivial, bare, unix, *pinned])
    if any(errors):
        raise SystemExit(f"benchmark policy failed to start: {next(e for e in errors if e)}")
    try:
        raw_env = raw_metaworld_env()
        env = make_env(ENV_ID, NO_IMAGES)
        client = PolicyClient(trivial[0].base_url)
        unix_client = PolicyClient(unix.base_url)
        run_end_to_end(env, client, seeds[:1])  # warm-up: connection, caches
        run_end_to_end(env, unix_client, seeds[:1])
        raw_rates, e2e_rates, ratios, raw_cpu, e2e_cpu, act_p50 = [], [], [], [], [], []
        wrapped_rates, wrapped_cpu, unix_rates, unix_ratios = [], [], [], []
        for _ in range(args.rounds):
            steps, wall, cpu = run_raw(raw_env, seeds, actions)
            raw_rates.append(steps / wall)
            raw_cpu.append(cpu / steps * 1e6)
            steps, wall, cpu = run_wrapped(env, seeds, actions)
            wrapped_rates.append(steps / wall)
            wrapped_cpu.append(cpu / steps * 1e6)
            steps, wall, cpu, p50s = run_end_to_end(env, client, seeds)
            e2e_rates.append(steps / wall)
            e2e_cpu.append(cpu / steps * 1e6)
            act_p50 += p50s
            ratios.append(e2e_rates[-1] / raw_rates[-1])
            steps, wall, _, _ = run_end_to_end(env, unix_client, seeds)
            unix_rates.append(steps / wall)
            unix_ratios.append(unix_rates[-1] / raw_rates[-1])
        if args.profile:
            profile_episode(env, client, seeds[0])
        observation = env.reset(seeds[0])
        template_us, client_cpu_us = act_round_trip(trivial[0], observation)
        bare_us, _ = act_round_trip(bare, observation)
        client.close()
        unix_client.close()
        env.close()

        images_env = make_env(ENV_ID, WITH_IMAGES)
        with PolicyClient(trivial[0].base_url) as images_client:
            steps, wall, _, _ = run_end_to_end(images_env, images_client, seeds[:1])
        images_env.close()
        with_images = steps / wall

        aggregate = aggregate_rate(trivial[:2], seeds * 2)
        aggregate_4 = aggregate_rate(trivial, seeds * 2)
        pipelined_rate = aggregate_rate(pinned, seeds * 2, worker_cpus=env_cpus) if pipelined else float("nan")
    finally:
        for deployment in [*trivial, bare, unix, *pinned]:
            deployment.stop()

    raw_best = max(raw_rates)
    no_images_over_raw = statistics.median(ratios)
    evaluator_efficiency = statistics.median(raw_cpu) / statistics.median(e2e_cpu)
    result = {
        "benchmark": "rollout",
        "env_id": ENV_ID,
        "cores": usable_cores(),
        "load_avg_1m": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "raw_steps_per_s": round(raw_best, 1),
        "no_images_steps_per_s": round(max(e2e_rates), 1),
        "no_images_over_raw": round(no_images_over_raw, 3),
        "act_latency_p50_ms": round(statistics.median(act_p50), 3),
        "no_images_unix_steps_per_s": round(max(unix_rates), 1),
        "no_images_unix_over_raw": round(statistics.median(unix_ratios), 3),
        "env_wrapper_steps_per_s": round(max(wrapped_rates), 1),
        "raw_cpu_us_per_step": round(statistics.median(raw_cpu), 1),
        "env_wrapper_cpu_us_per_step": round(statistics.median(wrapped_cpu), 1),
        "evaluator_cpu_us_per_step_no_images": round(statistics.median(e2e_cpu), 1),
        "evaluator_cpu_efficiency": round(evaluator_efficiency, 3),
        "act_round_trip_us": {"fastapi_template": round(template_us, 1), "bare_asgi": round(bare_us, 1)},
        "client_cpu_us_per_act": round(client_cpu_us, 1),
        "with_images_steps_per_s": round(with_images, 2),
        "default_quality_render_fps": round(render_fps, 2),
        "with_images_over_default_render": round(with_images / render_fps, 2),
        "aggregate_2_miners_steps_per_s": round(aggregate, 1),
        "aggregate_2_miners_over_raw": round(aggregate / raw_best, 3),
        "aggregate_4_miners_4_workers_steps_per_s": round(aggregate_4, 1),
        "pipelined_2_miners_steps_per_s": round(pipelined_rate, 1),
        "pipelined_over_raw": round(pipelined_rate / raw_best, 3),
        "targets_met": {
            "no_images_over_raw>=0.8": no_images_over_raw >= TARGET_NO_IMAGES_OVER_RAW,
            "evaluator_cpu_efficiency>=0.8": evaluator_efficiency >= TARGET_NO_IMAGES_OVER_RAW,
            "aggregate_2_miners_over_raw>=0.8": aggregate / raw_best >= TARGET_NO_IMAGES_OVER_RAW,
            "pipelined_over_raw>=0.8": pipelined_rate / raw_best >= TARGET_NO_IMAGES_OVER_RAW,
            "with_images_over_default_render>=8": with_images / render_fps >= TARGET_IMAGES_OVER_DEFAULT_RENDER,
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
