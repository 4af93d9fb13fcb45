"""Rollout throughput against the budgets of DESIGN §11; prints one JSON line.

    MUJOCO_GL=egl python benchmarks/bench_rollout.py [--rounds 3] [--episodes 2]

All figures are on metaworld/reach-v3 with the same seeds, in one run:

- `raw_steps_per_s`: random actions straight into MetaWorld's own env, stock (no wrapper, no
  render). `raw_fast_steps_per_s`: the same env with our bit-identical fast paths
  (kinitro_dagster/sim/metaworld_fast.py), i.e. the simulator as our envs run it. End-to-end rates
  use those fast paths, so each ratio is given against both: against stock MetaWorld (the target's
  reference) and against the fast env (what the protocol still costs). `metaworld_step_us`: one
  step, stock and fast, for each of the 8 envs.
- `no_images_steps_per_s`: one miner end to end, `run_episode` with our env (no images) and the
  trivial template policy (benchmarks/policies/trivial: FastAPI + pydantic, as miners run it) over
  HTTP on loopback TCP. Target: >= 0.8 x raw. `no_images_unix_*`: the same server on a Unix socket.
- `with_images_steps_per_s`: the same with both cameras at 84x84, compared with MuJoCo at its
  default render quality doing the same work per step (`default_quality_steps_per_s`: a fresh
  model, default vis settings, Mesa's default threading, one env step and both cameras' 84x84
  frames, no HTTP; measured in a clean subprocess). Target: >= 8 x that rate. Also printed:
  `default_quality_render_fps` (one frame per call) and the ratio to it, which counts a step's two
  frames as one.
- `interleaved_steps_per_s`: the evaluator as it runs a partition: `evaluate_partition` with one
  worker pinned to one core playing 3 miners at once (`miners_per_worker`), their policy servers on
  the other core over Unix sockets (docker mode's transport), as when policies have CPUs of their
  own. While one miner's policy computes, the worker steps another miner's env. Compared with raw
  stepping on one core (`interleaved_over_raw`: stock; `interleaved_over_raw_fast`: the fast env).
  Target: >= 0.8. Measured with the bare ASGI server (`interleaved_*`) and
  with the FastAPI template (`interleaved_template_*`), whose ~300 us of CPU a request makes three
  servers sharing one core the bottleneck here. `raw_*_policies_busy` and
  `interleaved_over_raw*_policies_busy`: raw stepping while the same policy servers answer /act
  back to back on the policies' core (`serving_load`): whether policies computing next door slow
  the env core (measured here: by 1-10 %, well short of the interleaved gap).
- `aggregate_2_miners_steps_per_s`: two miners through `evaluate_partition` with two workers, i.e.
  two envs and two policy servers sharing this machine's two cores (and `aggregate_4_miners_...`:
  four miners, two per worker).
- Diagnostics that say where the time goes: our env wrapper alone (`env_wrapper_*`: action
  mapping and protocol observation, no HTTP), CPU per step of the evaluator (env + client, what the
  evaluator's cores pay when policies run on their own CPUs, as in docker mode), the round trip of
  one /act for the template server and for a bare ASGI server, the client's own CPU per act, and
  `fast_step_us_after_socket_round_trip`: one fast env step right after a plain socket round trip
  to a process on the other core, against `fast_step_us_alone` (the round trip not timed). On
  these VMs the step itself slows by a quarter or more: what talking to a policy costs the env
  core beyond the client's own code.

The machine is shared, so raw and end-to-end are measured in alternating rounds and each ratio is
the median of its per-round ratios; rates are the best round (capacity, not interference).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import statistics
import subprocess
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
from kinitro_dagster.protocol import PolicyAction
from kinitro_dagster.sim.base import EnvConfig, make_env
from kinitro_dagster.sim.episode import MinerTarget, run_episode
from kinitro_dagster.sim.metaworld_fast import accelerate
from kinitro_dagster.sim.registry import METAWORLD_ENV_IDS, env_task_name
from kinitro_dagster.sim.workers import evaluate_partition, usable_cores

ENV_ID = "metaworld/reach-v3"
STEPS = 500
POLICIES = Path(__file__).resolve().parent / "policies"
NO_IMAGES = EnvConfig(max_steps=STEPS, use_images=False)
PLAY_ON = EnvConfig(max_steps=STEPS, use_images=False, stop_on_success=False)  # every episode 500 steps
WITH_IMAGES = EnvConfig(max_steps=STEPS, use_images=True)  # both cameras, 84x84
TARGET_NO_IMAGES_OVER_RAW = 0.8
TARGET_IMAGES_OVER_DEFAULT = 8.0


def raw_metaworld_env(env_id: str = ENV_ID):
    """MetaWorld's stock env for the task, set up as our wrapper does (seeded positions), without it."""
    name = env_task_name(env_id)
    env = metaworld.env_dict.ALL_V3_ENVIRONMENTS[name]()
    env.set_task(metaworld.MT1(name, seed=0).train_tasks[0])
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True
    return env


def timed_steps(reset, step, seeds: list[int], actions) -> tuple[int, float, float]:
    """(steps, wall s, CPU s) of playing `actions` from `reset(seed)` for each seed; resets not timed."""
    steps, wall, cpu = 0, 0.0, 0.0
    for seed in seeds:
        reset(seed)
        started, cpu_started = time.perf_counter(), time.process_time()
        for action in actions:
            step(action)
        wall += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
        steps += len(actions)
    return steps, wall, cpu


def run_raw(env, seeds: list[int], actions: np.ndarray) -> tuple[int, float, float]:
    """MetaWorld's own env, as `raw_metaworld_env` builds it."""

    def reset(seed: int) -> None:
        env.seed(seed)
        env.reset()

    return timed_steps(reset, env.step, seeds, actions)


def run_wrapped(env, seeds: list[int], actions: np.ndarray) -> tuple[int, float, float]:
    """Our env (action mapping, protocol observation) with the same random actions, no HTTP."""
    policy_actions = [PolicyAction(ee_twist=np.r_[a[:3], 0.0, 0.0, 0.0], gripper=(a[3] + 1) / 2) for a in actions]
    return timed_steps(env.reset, env.step, seeds, policy_actions)


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


def default_quality_rates(steps: int = 30) -> tuple[float, float]:
    """MuJoCo at its default vis quality (multisampling, shadows, reflections) on a fresh model:
    (frames/s of one 84x84 frame, steps/s of a step plus both cameras' frames, as a Kinitro loop
    without HTTP does).

    Measured in a subprocess with Mesa's default threading: our env module sets LP_NUM_THREADS=0
    at import, which would otherwise apply here too.
    """
    code = f"from benchmarks.bench_rollout import _default_quality; print(*_default_quality({steps}))"
    env = {k: v for k, v in os.environ.items() if k != "LP_NUM_THREADS"}
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True)
    fps, steps_per_s = out.stdout.strip().splitlines()[-1].split()
    return float(fps), float(steps_per_s)


def _default_quality(steps: int) -> tuple[float, float]:
    os.environ.pop("LP_NUM_THREADS", None)  # read by Mesa at the first GL context
    env = raw_metaworld_env()
    env.seed(0)
    env.reset()
    renderer = mujoco.Renderer(env.model, 84, 84)
    cameras = [mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_CAMERA, c) for c in ("corner", "corner2")]
    renderer.update_scene(env.data, camera=cameras[0])
    renderer.render()  # the first frame builds GL state
    actions = np.random.default_rng(0).uniform(-1, 1, size=(steps, 4)).astype(np.float32)
    started = time.perf_counter()
    for action in actions:
        env.step(action)
        for camera in cameras:
            renderer.update_scene(env.data, camera=camera)
            renderer.render()
    elapsed = time.perf_counter() - started
    renderer.close()
    env.close()
    return 2 * steps / elapsed, steps / elapsed


def step_costs_us(seeds: list[int], actions: np.ndarray) -> dict[str, list[float]]:
    """Wall µs of one raw step of each env: [stock, fast], best of 3 (random actions, no render)."""
    costs = {}
    for env_id in METAWORLD_ENV_IDS:  # the raw MetaWorld envs (genesis: benchmarks/bench_genesis.py)
        stock, fast = raw_metaworld_env(env_id), accelerate(raw_metaworld_env(env_id))
        best = []
        for env in (stock, fast):
            rates = [steps / wall for steps, wall, _ in (run_raw(env, seeds, actions) for _ in range(3))]
            best.append(round(1e6 / max(rates), 1))
            env.close()
        costs[env_task_name(env_id)] = best
    return costs


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


def raw_rate_on(
    cpus: frozenset[int], env, seeds: list[int], actions: np.ndarray, *, neighbour: list[str] | None = None
) -> float:
    """Raw steps/s with this process pinned to `cpus` (its affinity is restored afterwards).

    `neighbour`: meanwhile this command runs (see `serving_load`), so that what a busy policy core
    costs the env core next to it is measured rather than assumed.
    """
    before = os.sched_getaffinity(0)
    load = subprocess.Popen(neighbour) if neighbour else None
    if load is not None:
        time.sleep(0.5)  # its imports and connections
    os.sched_setaffinity(0, cpus)
    try:
        steps, wall, _ = run_raw(env, seeds, actions)
    finally:
        os.sched_setaffinity(0, before)
        if load is not None:
            load.kill()
            load.wait()
    return steps / wall


def serving_load(deployments: list[LocalDeployment], cpus: frozenset[int], observation: dict) -> list[str]:
    """A command that keeps these policy servers answering /act back to back, from a client on their
    own `cpus`: their core then works as hard as the policies can, as a busy policy core does."""
    code = (
        "import json, os, sys\n"
        f"os.sched_setaffinity(0, {set(cpus)})\n"
        "from kinitro_dagster.miners.policy_client import PolicyClient\n"
        "observation = json.loads(sys.argv[1])\n"
        "clients = [PolicyClient(url) for url in sys.argv[2:]]\n"
        "for client in clients: client.reset({})\n"
        "while True:\n"
        "    for client in clients: client.act(observation)\n"
    )
    return [sys.executable, "-c", code, json.dumps(observation), *(d.base_url for d in deployments)]


def step_after_round_trip_us(
    env, seeds: list[int], actions: np.ndarray, cpus: frozenset[int], peer_cpus: frozenset[int]
) -> list[float]:
    """Wall µs of one env step [alone, right after a socket round trip to a process on `peer_cpus`],
    this process on `cpus`. The round trip itself is not timed: what it costs the step that follows
    (interrupts and VM exits on these VMs) is the part of the protocol's cost no client code sees."""
    ours, theirs = socket.socketpair()
    echo = (
        "import os, socket, sys\n"
        f"os.sched_setaffinity(0, {set(peer_cpus)})\n"
        "peer = socket.socket(fileno=int(sys.argv[1]))\n"
        "while peer.recv(65536):\n"
        "    peer.sendall(b'x' * 200)\n"
    )
    peer = subprocess.Popen([sys.executable, "-c", echo, str(theirs.fileno())], pass_fds=[theirs.fileno()])
    theirs.close()
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        best = []
        for round_trip in (False, True):
            per_step = []
            for seed in seeds * 2:
                env.seed(seed)
                env.reset()
                stepping = 0.0
                for action in actions:
                    if round_trip:
                        ours.sendall(b"y" * 900)
                        ours.recv(65536)
                    started = time.perf_counter()
                    env.step(action)
                    stepping += time.perf_counter() - started
                per_step.append(stepping / len(actions) * 1e6)
            best.append(round(min(per_step), 1))
        return best
    finally:
        os.sched_setaffinity(0, before)
        ours.close()
        peer.wait()


def partition_rate(
    deployments: list[LocalDeployment],
    seeds: list[int],
    *,
    workers: int,
    miners_per_worker: int = 1,
    worker_cpus: frozenset[int] | None = None,
) -> float:
    """Steps/s of `evaluate_partition` over these miners: all steps over the wall time of the busiest
    worker's episodes (worker start-up, env construction and teardown excluded)."""
    targets = [MinerTarget(uid, d.base_url, d.pid) for uid, d in enumerate(deployments)]
    records = evaluate_partition(
        ENV_ID,
        targets,
        seeds,
        PLAY_ON,
        max_workers=workers,
        miners_per_worker=miners_per_worker,
        worker_cpus=worker_cpus,
    )
    failed = [r for r in records if r.error_kind]
    if failed:
        raise RuntimeError(f"benchmark episode failed: {failed[0].error_kind}: {failed[0].error}")
    # Every miner is in flight at once (len(targets) <= workers * miners_per_worker): the partition
    # took as long as its slowest miner's episodes.
    assert len(targets) <= workers * miners_per_worker
    return sum(r.steps for r in records) / max(sum(r.wall_seconds for r in records if r.uid == t.uid) for t in targets)


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

    default_fps, default_steps_per_s = default_quality_rates()
    cpus = sorted(os.sched_getaffinity(0))
    env_cpu, policy_cpu = frozenset(cpus[:1]), frozenset(cpus[1:2] or cpus[:1])
    trivial = [LocalDeployment(POLICIES / "trivial") for _ in range(4)]
    bare = LocalDeployment(POLICIES / "bare_asgi")
    unix = LocalDeployment(POLICIES / "trivial", transport="unix")
    # Policies with a core of their own (the other one), on Unix sockets as in docker mode.
    own_core_bare = [LocalDeployment(POLICIES / "bare_asgi", cpus=policy_cpu, transport="unix") for _ in range(3)]
    own_core_template = [LocalDeployment(POLICIES / "trivial", cpus=policy_cpu, transport="unix") for _ in range(3)]
    everything = [*trivial, bare, unix, *own_core_bare, *own_core_template]
    errors = start_all(everything)
    if any(errors):
        raise SystemExit(f"benchmark policy failed to start: {next(e for e in errors if e)}")
    try:
        raw_env = raw_metaworld_env()
        fast_env = accelerate(raw_metaworld_env())
        env = make_env(ENV_ID, NO_IMAGES)
        client = PolicyClient(trivial[0].base_url)
        unix_client = PolicyClient(unix.base_url)
        run_end_to_end(env, client, seeds[:1])  # warm-up: connection, caches
        run_end_to_end(env, unix_client, seeds[:1])
        raw_rates, e2e_rates, ratios, raw_cpu, e2e_cpu, act_p50 = [], [], [], [], [], []
        wrapped_rates, wrapped_cpu, unix_rates, unix_ratios = [], [], [], []
        interleaved_rates, interleaved_ratios, template_rates, template_ratios = [], [], [], []
        raw_neighbour_busy, neighbour_ratios, fast_neighbour_busy, fast_neighbour_ratios = [], [], [], []
        policies_busy = serving_load(own_core_bare, policy_cpu, env.reset(seeds[0]))
        fast_rates, fast_interleaved_ratios = [], []
        for _ in range(args.rounds):
            steps, wall, cpu = run_raw(raw_env, seeds, actions)
            raw_rates.append(steps / wall)
            raw_cpu.append(cpu / steps * 1e6)
            steps, wall, _ = run_raw(fast_env, seeds, actions)
            fast_rates.append(steps / wall)
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
            # Raw stepping on the core the interleaved worker gets, right before it.
            raw_on_core = raw_rate_on(env_cpu, raw_env, seeds, actions)
            fast_on_core = raw_rate_on(env_cpu, fast_env, seeds, actions)
            if policy_cpu != env_cpu:
                raw_neighbour_busy.append(raw_rate_on(env_cpu, raw_env, seeds, actions, neighbour=policies_busy))
                fast_neighbour_busy.append(raw_rate_on(env_cpu, fast_env, seeds, actions, neighbour=policies_busy))
            interleaved_rates.append(
                partition_rate(own_core_bare, seeds, workers=1, miners_per_worker=3, worker_cpus=env_cpu)
            )
            interleaved_ratios.append(interleaved_rates[-1] / raw_on_core)
            fast_interleaved_ratios.append(interleaved_rates[-1] / fast_on_core)
            if raw_neighbour_busy:
                neighbour_ratios.append(interleaved_rates[-1] / raw_neighbour_busy[-1])
                fast_neighbour_ratios.append(interleaved_rates[-1] / fast_neighbour_busy[-1])
            template_rates.append(
                partition_rate(own_core_template, seeds, workers=1, miners_per_worker=3, worker_cpus=env_cpu)
            )
            template_ratios.append(template_rates[-1] / raw_on_core)
        if args.profile:
            profile_episode(env, client, seeds[0])
        observation = env.reset(seeds[0])
        template_us, client_cpu_us = act_round_trip(trivial[0], observation)
        bare_us, _ = act_round_trip(bare, observation)
        client.close()
        unix_client.close()
        env.close()
        step_alone_us, step_after_trip_us = step_after_round_trip_us(fast_env, seeds, actions, env_cpu, policy_cpu)
        raw_env.close()
        fast_env.close()
        step_us = step_costs_us(seeds, actions)

        images_env = make_env(ENV_ID, WITH_IMAGES)
        with PolicyClient(trivial[0].base_url) as images_client:
            run_end_to_end(images_env, images_client, seeds[:1])  # warm-up: GL state
            steps, wall, _, _ = run_end_to_end(images_env, images_client, seeds)
        images_env.close()
        with_images = steps / wall

        aggregate = partition_rate(trivial[:2], seeds, workers=2)
        aggregate_4 = partition_rate(trivial, seeds, workers=2, miners_per_worker=2)
    finally:
        for deployment in everything:
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
        "raw_fast_steps_per_s": round(max(fast_rates), 1),
        "metaworld_step_us": step_us,
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
        "fast_step_us_alone": step_alone_us,
        "fast_step_us_after_socket_round_trip": step_after_trip_us,
        "with_images_steps_per_s": round(with_images, 2),
        "default_quality_render_fps": round(default_fps, 2),
        "default_quality_steps_per_s": round(default_steps_per_s, 2),
        "with_images_over_default_quality": round(with_images / default_steps_per_s, 2),
        "with_images_over_default_frame_rate": round(with_images / default_fps, 2),
        "interleaved_steps_per_s": round(max(interleaved_rates), 1),
        "interleaved_over_raw": round(statistics.median(interleaved_ratios), 3),
        "interleaved_over_raw_fast": round(statistics.median(fast_interleaved_ratios), 3),
        "raw_steps_per_s_policies_busy": round(max(raw_neighbour_busy), 1) if raw_neighbour_busy else None,
        "raw_fast_steps_per_s_policies_busy": round(max(fast_neighbour_busy), 1) if fast_neighbour_busy else None,
        "interleaved_over_raw_policies_busy": (
            round(statistics.median(neighbour_ratios), 3) if neighbour_ratios else None
        ),
        "interleaved_over_raw_fast_policies_busy": (
            round(statistics.median(fast_neighbour_ratios), 3) if fast_neighbour_ratios else None
        ),
        "interleaved_template_steps_per_s": round(max(template_rates), 1),
        "interleaved_template_over_raw": round(statistics.median(template_ratios), 3),
        "aggregate_2_miners_2_workers_steps_per_s": round(aggregate, 1),
        "aggregate_4_miners_2_workers_steps_per_s": round(aggregate_4, 1),
        "targets_met": {
            "no_images_over_raw>=0.8": no_images_over_raw >= TARGET_NO_IMAGES_OVER_RAW,
            "evaluator_cpu_efficiency>=0.8": evaluator_efficiency >= TARGET_NO_IMAGES_OVER_RAW,
            "interleaved_over_raw>=0.8": statistics.median(interleaved_ratios) >= TARGET_NO_IMAGES_OVER_RAW,
            "with_images_over_default_quality>=8": with_images / default_steps_per_s >= TARGET_IMAGES_OVER_DEFAULT,
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
