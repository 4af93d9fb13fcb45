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

    images_steps_per_s: float  # one worker core, every camera at 84x84
    proprio_steps_per_s: float  # one worker core, no camera rendered
    renderer: str  # the GL renderer the frames were drawn by (llvmpipe: the CPU)
    cores: int  # the measuring host's cores
    measured_at: str
    source: Path

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
    hosts: int  # the fewest hosts of `cores_per_host` cores that play the cycle within the interval
    wall_seconds: float  # on that many hosts, every core busy
    single_host_wall_seconds: float
    interval_seconds: int
    fits_on_one_host: bool
    partitions: int  # env partitions: without sharding, no more hosts than this play at once

    @property
    def needs_sharding(self) -> bool:
        """Whether the cycle needs more hosts than it has env partitions."""
        return self.hosts > self.partitions


def plan_cycle(
    *,
    miners: int,
    envs: int,
    episodes: int,
    max_steps: int,
    images: bool,
    rates: MeasuredRates,
    cores_per_host: int,
    interval_seconds: int,
) -> CyclePlan:
    """The work of one cycle and the hosts it needs to finish within `interval_seconds`."""
    for name, value in {"miners": miners, "envs": envs, "episodes": episodes, "max_steps": max_steps,
                        "cores_per_host": cores_per_host, "interval_seconds": interval_seconds}.items():  # fmt: skip
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if cores_per_host < 1 + POLICY_CORES_PER_WORKER_CORE:
        raise ValueError(f"a host needs at least {1 + POLICY_CORES_PER_WORKER_CORE} cores: one for a worker, "
                         "one for its policies")  # fmt: skip
    steps = miners * envs * episodes * max_steps
    rate = rates.images_steps_per_s if images else rates.proprio_steps_per_s
    worker_core_s = steps / rate
    host_core_s = worker_core_s * (1 + POLICY_CORES_PER_WORKER_CORE)
    hosts = max(1, math.ceil(host_core_s / (interval_seconds * cores_per_host)))
    return CyclePlan(
        steps=steps,
        steps_per_core_s=rate,
        worker_core_hours=worker_core_s / 3600,
        host_core_hours=host_core_s / 3600,
        hosts=hosts,
        wall_seconds=host_core_s / (hosts * cores_per_host),
        single_host_wall_seconds=host_core_s / cores_per_host,
        interval_seconds=interval_seconds,
        fits_on_one_host=host_core_s / cores_per_host <= interval_seconds,
        partitions=envs,
    )
