"""What a cycle needs, from the rates the benchmarks measured on a host (`kinitro plan`).

A cycle plays miners x envs x episodes episodes of up to `max_timesteps` steps each. The rates
come from benchmarks/bench_frames.py run with `--save` on the host being planned for (it writes
`<state dir>/benchmarks/frames.json`): steps/s of one rollout worker core playing its default
number of miners at once, with both cameras and with none, its policies on a core of their own.
So a plan pairs every worker core with one core for the miners' policy servers, as measured; a
real policy that computes more than the benchmark's template needs more (its container's
`KINITRO_EXECUTOR_MINER_DEPLOYMENT_CPU`).

Steps are counted at their maximum (no episode ends early): the plan is an upper bound, and a
cycle whose miners succeed early needs less. GPU rates are whatever the file says: a file measured
on a GPU host (its `renderer` names the GPU) plans GPU hosts; this module never guesses them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast")
POLICY_CORES_PER_WORKER_CORE = 1  # as measured: the policies of a worker share one core of their own


class RatesMissing(RuntimeError):
    """No usable benchmark rates: the message says what to run."""


@dataclass(frozen=True)
class MeasuredRates:
    """A host's rates, as benchmarks/bench_frames.py measured and saved them."""

    images_steps_per_s: float  # one worker core, every camera at 84x84, the full meshes (the default)
    simplified_steps_per_s: float  # the same with the simplified meshes (KINITRO_EXECUTOR_RENDER_MESH_DETAIL)
    simplified_detail: float
    proprio_steps_per_s: float  # one worker core, no camera rendered
    renderer: str  # the GL renderer the frames were drawn by (llvmpipe: the CPU)
    cores: int  # the measuring host's cores
    measured_at: str
    source: Path

    def images_rate(self, mesh_detail: float) -> float:
        """Steps/s with cameras at a mesh detail the benchmark measured; ValueError for another."""
        measured = {1.0: self.images_steps_per_s, self.simplified_detail: self.simplified_steps_per_s}
        if mesh_detail not in measured:
            raise ValueError(f"{self.source} has rates for mesh detail {' and '.join(map(str, measured))}, "
                             f"not {mesh_detail}: set KINITRO_EXECUTOR_RENDER_MESH_DETAIL to one of them")
        return measured[mesh_detail]

    @property
    def on_gpu(self) -> bool:
        return not any(name in self.renderer.lower() for name in SOFTWARE_RENDERERS)

    @classmethod
    def load(cls, path: Path) -> MeasuredRates:
        if not path.is_file():
            raise RatesMissing(f"no measured rates at {path}: run `python benchmarks/bench_frames.py --save` on "
                               "the host to plan for (about 3 minutes, nothing else running), or pass --rates FILE")
        try:
            data = json.loads(path.read_text())
            return cls(
                images_steps_per_s=float(data["end_to_end_steps_per_s"]["default"]),
                simplified_steps_per_s=float(data["end_to_end_steps_per_s"]["simplified"]),
                simplified_detail=float(data["simplified_detail"]),
                proprio_steps_per_s=float(data["proprio_only_steps_per_s"]),
                renderer=str(data["renderer"]),
                cores=int(data["cores"]),
                measured_at=str(data["measured_at"]),
                source=path,
            )
        except (ValueError, KeyError, TypeError) as error:
            raise RatesMissing(f"{path} is not a bench_frames.py result ({error}): run it again with --save") from None


@dataclass(frozen=True)
class CyclePlan:
    steps: int  # at most: every episode runs max_timesteps
    steps_per_core_s: float
    worker_core_hours: float
    host_core_hours: float  # worker cores plus the policies' cores beside them
    interval_seconds: int
    cores_per_host: int
    partitions: int  # env partitions: each runs on one host, whole
    partition_seconds: float  # one partition on one host, every core busy
    # The fewest hosts that play the cycle within the interval, partitions whole (None: not even one
    # host per partition does), and the cycle's wall time on them.
    hosts: int | None
    wall_seconds: float | None
    # A partition's miners spread over hosts in shards (KINITRO_EXECUTOR_MINERS_PER_SHARD), every shard
    # on a host of its own at once: the largest even shard that fits the interval (1 when none does),
    # the hosts (envs × shards) and the cycle's wall time.
    shard_miners: int
    spread_hosts: int
    spread_wall_seconds: float

    @property
    def single_host_wall_seconds(self) -> float:
        return self.partitions * self.partition_seconds


def plan_cycle(
    *,
    miners: int,
    envs: int,
    episodes: int,
    max_steps: int,
    images: bool,
    rates: MeasuredRates,
    mesh_detail: float = 1.0,
    cores_per_host: int,
    interval_seconds: int,
) -> CyclePlan:
    """The work of one cycle and the hosts it needs to finish within `interval_seconds`.

    Partitions (one per env, all the same size) run whole on one host each, a host playing its
    partitions one after another: with H hosts the cycle takes ceil(envs / H) partitions' time.
    """
    for name, value in {"miners": miners, "envs": envs, "episodes": episodes, "max_steps": max_steps,
                        "interval_seconds": interval_seconds}.items():  # fmt: skip
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if cores_per_host < 1 + POLICY_CORES_PER_WORKER_CORE:
        raise ValueError(f"a host needs at least {1 + POLICY_CORES_PER_WORKER_CORE} cores: one for a worker, "
                         "one for its policies")  # fmt: skip
    steps = miners * envs * episodes * max_steps
    rate = rates.images_rate(mesh_detail) if images else rates.proprio_steps_per_s
    worker_core_s = steps / rate
    host_core_s = worker_core_s * (1 + POLICY_CORES_PER_WORKER_CORE)
    partition_s = host_core_s / envs / cores_per_host
    rounds = math.floor(interval_seconds / partition_s)  # partitions one host plays within the interval
    hosts = math.ceil(envs / rounds) if rounds >= 1 else None
    miner_s = host_core_s / (miners * envs)  # one miner's episodes of one env, in host-core seconds
    fitting = max(1, min(miners, math.floor(interval_seconds * cores_per_host / miner_s)))
    shards = math.ceil(miners / fitting)
    shard_miners = math.ceil(miners / shards)  # shards as even as they come
    return CyclePlan(
        steps=steps,
        steps_per_core_s=rate,
        worker_core_hours=worker_core_s / 3600,
        host_core_hours=host_core_s / 3600,
        interval_seconds=interval_seconds,
        cores_per_host=cores_per_host,
        partitions=envs,
        partition_seconds=partition_s,
        hosts=hosts,
        wall_seconds=math.ceil(envs / hosts) * partition_s if hosts else None,
        shard_miners=shard_miners,
        spread_hosts=envs * shards,
        spread_wall_seconds=shard_miners * miner_s / cores_per_host,
    )
