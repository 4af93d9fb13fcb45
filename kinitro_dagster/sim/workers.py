"""Every miner of a (cycle, env) partition, sharded over rollout worker processes.

This is the shard boundary of DESIGN §1: miners are spread over a pool of worker processes (one
env and one client each, several miners in flight per worker: `sim.lanes`); the same unit can
later run as one dynamic op per shard on other hosts. A worker that dies (a simulator segfault,
the OOM killer) costs only its current miner, whose episodes are recorded as `evaluator_error`;
the pool starts a replacement and carries on.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from kinitro_dagster.miners.policy_client import ClientSettings
from kinitro_dagster.sim.base import EnvConfig, make_env
from kinitro_dagster.sim.episode import EnvFactory, MinerTarget, evaluator_failures, log_miner_outcome
from kinitro_dagster.sim.lanes import Lanes
from kinitro_dagster.sim.registry import preload_modules, validate_env_id
from kinitro_dagster.warehouse.records import EpisodeRecord

logger = logging.getLogger(__name__)

# -- one partition --------------------------------------------------------------------------------


def evaluate_partition(
    env_id: str,
    miners: Sequence[MinerTarget],
    seeds: Sequence[int],
    env_config: EnvConfig | None = None,
    *,
    max_workers: int | None = None,
    miners_per_worker: int | None = None,
    client_settings: ClientSettings | None = None,
    env_factory: EnvFactory = make_env,
    eval_timeout: float | None = None,
    worker_cpus: frozenset[int] | None = None,
    render_devices: Sequence[int] = (),
) -> list[EpisodeRecord]:
    """Every miner's episodes on `env_id`, sharded over worker processes (see `worker_context`).

    `max_workers` defaults to the cores the workers may use (`worker_cpus`, else this process's).
    Each worker plays up to `miners_per_worker` miners at once, one env each: it steps whichever
    miner's policy has answered, so its core is not idle while a policy computes (policies on CPUs
    of their own: docker limits, remote hosts). Each extra miner costs one more env in memory.
    None: `default_miners_per_worker(env_config)`. `render_devices`: the EGL device each worker renders
    on, in turn (the n-th worker started takes `render_devices[n % len]`); (): MuJoCo's choice.
    Rows come back sorted by (uid, episode), exactly `len(miners) * len(seeds)` of them whatever fails.
    """
    if env_factory is make_env:
        env_id = validate_env_id(env_id)
    uids = [miner.uid for miner in miners]
    if len(set(uids)) != len(uids):
        raise ValueError(f"miner uids must be unique within a partition, got {sorted(uids)}")
    if miners_per_worker is None:
        miners_per_worker = default_miners_per_worker(env_config)
    if miners_per_worker < 1:
        raise ValueError(f"miners_per_worker must be at least 1, got {miners_per_worker}")
    if not miners:
        return []
    cores = len(worker_cpus) if worker_cpus else usable_cores()
    n_workers = max(1, min(math.ceil(len(miners) / miners_per_worker), max_workers or cores))
    job = WorkerJob(
        env_id,
        tuple(seeds),
        env_config,
        client_settings or ClientSettings(),
        env_factory,
        eval_timeout,
        worker_cpus,
        miners_per_worker,
        tuple(render_devices),
    )
    started = time.perf_counter()
    records = _WorkerPool(n_workers, job).run(list(miners))
    logger.info(
        "partition evaluated env_id=%s miners=%d episodes=%d workers=%d miners_per_worker=%d wall_s=%.1f",
        env_id, len(miners), len(records), n_workers, miners_per_worker, time.perf_counter() - started,
        extra={"env_id": env_id, "miners": len(miners), "workers": n_workers, "miners_per_worker": miners_per_worker},
    )  # fmt: skip
    return sorted(records, key=lambda r: (r.uid, r.episode))


def default_miners_per_worker(env_config: EnvConfig | None) -> int:
    """3 without images: one miner keeps the core ~70 % busy, two ~94 %, three ~99 % (an env costs
    ~27 MiB more; a worker holds 246 MiB with three). 2 with images: a worker's envs share one
    renderer (sim/metaworld.py), so a second env costs ~45 MiB (449 MiB with two, 404 with one;
    DESIGN §11: an episode worker <= 512 MiB), and its frames are drawn while the other miner's
    policy computes."""
    return 2 if (env_config or EnvConfig()).use_images else 3


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# Imported once by the fork server, so that a new worker starts in milliseconds instead of paying
# ~5 s (more on a loaded host) of MuJoCo, MetaWorld and NumPy imports. Failed imports are skipped.
_WORKER_PRELOAD = ["kinitro_dagster.sim.workers", *preload_modules()]


def worker_context() -> multiprocessing.context.BaseContext:
    """How rollout workers are started: `forkserver` where available, else `spawn`.

    Never plain `fork`: the evaluator process may hold threads (Dagster's) and GL state that a
    forked child must not inherit. A fork server is a fresh single-threaded interpreter that has
    only imported the preload modules; workers forked from it are as clean as spawned ones and
    build their own env and client, but skip the imports.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_WORKER_PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


@dataclass(frozen=True)
class WorkerJob:
    """What every worker of a partition needs besides the miners: sent once, at start."""

    env_id: str
    seeds: tuple[int, ...]
    env_config: EnvConfig | None
    client_settings: ClientSettings
    env_factory: EnvFactory
    eval_timeout: float | None
    worker_cpus: frozenset[int] | None
    miners_per_worker: int
    render_devices: tuple[int, ...] = ()


def _worker_main(conn: multiprocessing.connection.Connection, job: WorkerJob, render_device: int | None) -> None:
    """A worker: play the miners the pool sends (up to `job.miners_per_worker` at once) until it sends None.

    Each finished miner goes back as `(uid, records)`.
    """
    if job.worker_cpus:
        os.sched_setaffinity(0, job.worker_cpus)
    if render_device is not None:
        # Read when the first GL context is made, which no worker has yet (the fork server only
        # imports). MuJoCo's variable, and pyrender's, which Genesis's rasterizer uses.
        os.environ["MUJOCO_EGL_DEVICE_ID"] = os.environ["EGL_DEVICE_ID"] = str(render_device)
    lanes = Lanes(job, conn)
    try:
        lanes.serve()
    except (EOFError, KeyboardInterrupt):  # the pool went away: nothing left to report to
        pass
    finally:
        lanes.close()


def _render_device(job: WorkerJob, index: int) -> int | None:
    """The EGL device of the `index`-th worker started (from 1), round-robin over the job's."""
    return job.render_devices[(index - 1) % len(job.render_devices)] if job.render_devices else None


class _Worker:
    def __init__(self, context: multiprocessing.context.BaseContext, job: WorkerJob, index: int) -> None:
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(
            target=_worker_main, args=(child_conn, job, _render_device(job, index)), name=f"rollout-worker-{index}",
            daemon=True,
        )
        self.process.start()
        child_conn.close()  # so that our recv sees EOF if the worker dies
        self.in_flight: dict[int, tuple[MinerTarget, float]] = {}  # uid -> (miner, assigned at)

    def assign(self, miner: MinerTarget) -> None:
        self.in_flight[miner.uid] = (miner, time.perf_counter())
        self.conn.send(miner)

    def stop(self, *, graceful: bool = True) -> None:
        """Ask an idle worker to finish (it closes its envs), or kill one that is still busy."""
        try:
            if graceful and self.process.is_alive():
                self.conn.send(None)
                self.process.join(timeout=10)
        except OSError:
            pass
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.conn.close()


class _WorkerPool:
    """Workers pull miners as they finish others; a dead worker is replaced by a new one.

    The miners in flight on a worker that dies lose their episodes. One of them may have caused it
    (a simulator crash on its action), so each is played again, alone on a worker of its own; a
    miner whose solo worker dies too fails its episodes as `evaluator_error`.
    """

    def __init__(self, size: int, job: WorkerJob) -> None:
        self.size = size
        self.job = job
        self.context = worker_context()
        self._spawned = 0
        self._solo: set[int] = set()  # uids to be played alone (they were in flight when a worker died)

    def run(self, miners: list[MinerTarget]) -> list[EpisodeRecord]:
        pending = deque(miners)
        records: list[EpisodeRecord] = []
        workers = [self._spawn() for _ in range(self.size)]
        try:
            self._fill(workers, pending)
            while busy := [w for w in workers if w.in_flight]:
                ready = multiprocessing.connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                for worker in busy:
                    answered = worker.conn in ready or worker.conn.poll()
                    if answered and (result := self._receive(worker)) is not None:
                        records += result
                        continue
                    if worker.process.sentinel in ready or not worker.process.is_alive():
                        records += self._lost(worker, pending)
                        workers.remove(worker)
                        worker.stop(graceful=False)
                        if pending or not workers:
                            workers.append(self._spawn())
                self._fill(workers, pending)
        finally:
            # Normally every worker is idle here; after an error (or Ctrl-C) some are mid-miner.
            for worker in workers:
                worker.stop(graceful=not worker.in_flight)
        return records

    def _fill(self, workers: list[_Worker], pending: deque[MinerTarget]) -> None:
        """Give workers miners up to their capacity, evenly; a solo miner only to an idle worker."""
        while pending:
            alone = pending[0].uid in self._solo
            open_workers = [
                w
                for w in workers
                if not (w.in_flight.keys() & self._solo)
                and len(w.in_flight) < (1 if alone else self.job.miners_per_worker)
            ]
            if not open_workers:
                return
            min(open_workers, key=lambda w: len(w.in_flight)).assign(pending.popleft())

    def _spawn(self) -> _Worker:
        self._spawned += 1
        return _Worker(self.context, self.job, self._spawned)

    def _receive(self, worker: _Worker) -> list[EpisodeRecord] | None:
        """One finished miner's records from the worker; None if it died instead of answering."""
        try:
            uid, records = worker.conn.recv()
        except (EOFError, OSError):
            return None
        miner, assigned_at = worker.in_flight.pop(uid)
        log_miner_outcome(self.job.env_id, miner, records, time.perf_counter() - assigned_at)
        return records

    def _lost(self, worker: _Worker, pending: deque[MinerTarget]) -> list[EpisodeRecord]:
        """The miners in flight on a worker that died: queued to play again alone, or failed if they were."""
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        shared = len(worker.in_flight) > 1
        records: list[EpisodeRecord] = []
        for miner, assigned_at in worker.in_flight.values():
            retry = shared and miner.uid not in self._solo
            logger.error(
                "rollout worker died env_id=%s uid=%d exitcode=%s retry_alone=%s",
                self.job.env_id, miner.uid, code, retry,
                extra={"env_id": self.job.env_id, "uid": miner.uid, "exitcode": code, "retry_alone": retry},
            )  # fmt: skip
            if retry:
                self._solo.add(miner.uid)
                pending.append(miner)
                continue
            reason = f"rollout worker {worker.process.name} died (exit code {code}) while evaluating uid {miner.uid}"
            lost = evaluator_failures(miner.uid, self.job.seeds, reason)
            log_miner_outcome(self.job.env_id, miner, lost, time.perf_counter() - assigned_at)
            records += lost
        worker.in_flight.clear()
        return records
