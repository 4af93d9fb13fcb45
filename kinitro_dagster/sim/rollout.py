"""The rollout loop: play episodes of miners' policies in a simulated environment.

Three layers, smallest first:

- `run_episode`: one seeded episode of one policy. A misbehaving policy (timeout, crash, bad
  action, ...) ends its episode as a failure with an error kind; nothing a policy does raises here.
- `evaluate_miner`: all episodes of one miner on one env, reusing one env instance. Once the
  miner's server is known dead, its remaining episodes fail at once as `crashed`.
- `evaluate_partition`: every miner of a (cycle, env) partition. This is the shard boundary of
  DESIGN §1: miners are spread over a pool of worker processes (one env and one client each);
  the same unit can later run as one dynamic op per shard on other hosts. A worker that dies
  (a simulator segfault, the OOM killer) costs only its current miner, whose episodes are recorded
  as `evaluator_error`; the pool starts a replacement and carries on.

Throughput note. While a policy computes its action, its miner's env waits: one miner's episode is
strictly sequential. Other miners' episodes are not, so running more miners at once than there are
cores keeps the cores busy when policy servers have CPUs of their own (`max_workers`).
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from kinitro_dagster.miners.deployments import process_is_alive
from kinitro_dagster.miners.policy_client import ClientSettings, ErrorKind, PolicyClient, PolicyError
from kinitro_dagster.sim.base import EnvConfig, SimEnv, StepResult, make_env
from kinitro_dagster.sim.registry import validate_env_id
from kinitro_dagster.warehouse.records import EpisodeRecord

logger = logging.getLogger(__name__)

EnvFactory = Callable[[str, EnvConfig | None], SimEnv]
OnStep = Callable[[int, StepResult], None]

_ERROR_TEXT_CHARS = 500


@dataclass(frozen=True)
class MinerTarget:
    """A miner's running policy server, as a partition sees it. Picklable for worker processes."""

    uid: int
    base_url: str
    # Local deployments: the server's process id, so that a worker can tell a crashed server
    # (`crashed`, remaining episodes skipped) from a slow or unreachable one.
    pid: int | None = None


# -- one episode ----------------------------------------------------------------------------------


def run_episode(
    env: SimEnv,
    client: PolicyClient,
    *,
    uid: int,
    episode: int,
    seed: int,
    on_step: OnStep | None = None,
    episode_timeout_s: float | None = None,
) -> EpisodeRecord:
    """Play one episode; policy misbehaviour ends it as a failure with `error_kind` set, never raises.

    `on_step(step_number, result)` is called after every env step (1-based), e.g. to record frames.
    `episode_timeout_s` bounds the whole episode (the operator's eval timeout): a policy that
    answers each /act just inside the act timeout cannot stretch an episode to 500 x 0.5 s.
    """
    started = time.perf_counter()
    latencies: list[float] = []
    steps, total_reward, success = 0, 0.0, False
    error_kind: str | None = None
    error: str | None = None
    try:
        observation = env.reset(seed)
        client.reset(env.task_config())
        while True:
            asked = time.perf_counter()
            action = client.act(observation)
            latencies.append(time.perf_counter() - asked)
            try:
                result = env.step(action)
            except ValueError as exc:  # the env refuses a non-finite or malformed action
                raise PolicyError(ErrorKind.BAD_ACTION, f"environment rejected the action: {exc}") from None
            steps += 1
            total_reward += result.reward
            success = result.success
            if on_step is not None:
                on_step(steps, result)
            if result.done or (success and env.config.stop_on_success):
                break
            if episode_timeout_s is not None and time.perf_counter() - started > episode_timeout_s:
                raise PolicyError(
                    ErrorKind.TIMEOUT, f"episode took longer than its {episode_timeout_s:g} s budget (eval timeout)"
                )
            observation = result.observation
    except PolicyError as exc:
        error_kind, error = exc.kind.value, exc.message
        client.close()  # the next episode starts on a fresh connection
    except Exception as exc:  # our side broke (env, callback): not the miner's fault
        error_kind = ErrorKind.EVALUATOR_ERROR.value
        error = f"{type(exc).__name__}: {exc}"
        client.close()
    p50, p99 = _latency_percentiles_ms(latencies)
    return EpisodeRecord(
        uid=uid,
        episode=episode,
        seed=seed,
        success=success and error_kind is None,  # an episode ended by an error is a failure
        total_reward=total_reward,
        steps=steps,
        wall_seconds=time.perf_counter() - started,
        error_kind=error_kind,
        error=error[:_ERROR_TEXT_CHARS] if error else None,
        latency_p50_ms=p50,
        latency_p99_ms=p99,
    )


def _latency_percentiles_ms(latencies: list[float]) -> tuple[float | None, float | None]:
    if not latencies:
        return None, None
    p50, p99 = np.percentile(latencies, [50, 99])
    return float(p50) * 1e3, float(p99) * 1e3


def failed_episode(uid: int, episode: int, seed: int, kind: ErrorKind, error: str) -> EpisodeRecord:
    """An episode that never ran (dead server, broken worker): a failure with zero steps."""
    return EpisodeRecord(
        uid=uid,
        episode=episode,
        seed=seed,
        success=False,
        total_reward=0.0,
        steps=0,
        wall_seconds=0.0,
        error_kind=kind.value,
        error=error[:_ERROR_TEXT_CHARS],
    )


# -- one miner ------------------------------------------------------------------------------------


def evaluate_miner(
    env_id: str,
    base_url: str,
    *,
    uid: int,
    seeds: Sequence[int],
    env_config: EnvConfig | None = None,
    client_settings: ClientSettings | None = None,
    pid: int | None = None,
    env: SimEnv | None = None,
    env_factory: EnvFactory = make_env,
    episode_timeout_s: float | None = None,
) -> list[EpisodeRecord]:
    """Episode `i` of the result plays `seeds[i]`. Builds (and closes) its env unless `env` is given."""
    is_alive = (lambda: process_is_alive(pid)) if pid is not None else None
    client = PolicyClient.from_settings(base_url, client_settings or ClientSettings(), is_alive=is_alive)
    own_env = env is None
    records: list[EpisodeRecord] = []
    try:
        if env is None:
            env = env_factory(env_id, env_config)
        for episode, seed in enumerate(seeds):
            server_gone = bool(records) and records[-1].error_kind == ErrorKind.CRASHED
            if server_gone or (is_alive is not None and not is_alive()):
                records += _skip_crashed(uid, seeds, start=episode)
                break
            records.append(
                run_episode(env, client, uid=uid, episode=episode, seed=seed, episode_timeout_s=episode_timeout_s)
            )
    finally:
        client.close()
        if own_env and env is not None:
            env.close()
    return records


def _skip_crashed(uid: int, seeds: Sequence[int], *, start: int) -> list[EpisodeRecord]:
    reason = "policy server process is gone; episode not played"
    return [failed_episode(uid, i, seeds[i], ErrorKind.CRASHED, reason) for i in range(start, len(seeds))]


# -- one partition --------------------------------------------------------------------------------


def evaluate_partition(
    env_id: str,
    miners: Sequence[MinerTarget],
    seeds: Sequence[int],
    env_config: EnvConfig | None = None,
    *,
    max_workers: int | None = None,
    client_settings: ClientSettings | None = None,
    env_factory: EnvFactory = make_env,
    episode_timeout_s: float | None = None,
    worker_cpus: frozenset[int] | None = None,
) -> list[EpisodeRecord]:
    """Every miner's episodes on `env_id`, sharded over worker processes (see `worker_context`).

    `max_workers` defaults to the cores the workers may use (`worker_cpus`, else this process's).
    While a worker waits for its policy, its core is idle unless another worker has an env to
    step: with policies on CPUs of their own (docker limits, `LocalDeployment(cpus=...)`), more
    workers than cores keeps the env cores busy. Rows come back sorted by (uid, episode), exactly
    `len(miners) * len(seeds)` of them whatever fails.
    """
    if env_factory is make_env:
        validate_env_id(env_id)
    uids = [miner.uid for miner in miners]
    if len(set(uids)) != len(uids):
        raise ValueError(f"miner uids must be unique within a partition, got {sorted(uids)}")
    if not miners:
        return []
    n_workers = max(1, min(len(miners), max_workers or (len(worker_cpus) if worker_cpus else usable_cores())))
    pool = _WorkerPool(
        n_workers,
        _WorkerJob(
            env_id,
            tuple(seeds),
            env_config,
            client_settings or ClientSettings(),
            env_factory,
            episode_timeout_s,
            worker_cpus,
        ),
    )
    started = time.perf_counter()
    records = pool.run(list(miners))
    logger.info(
        "partition evaluated env_id=%s miners=%d episodes=%d workers=%d wall_s=%.1f",
        env_id, len(miners), len(records), n_workers, time.perf_counter() - started,
        extra={"env_id": env_id, "miners": len(miners), "workers": n_workers},
    )  # fmt: skip
    return sorted(records, key=lambda r: (r.uid, r.episode))


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# Imported once by the fork server, so that a new worker starts in milliseconds instead of paying
# ~5 s (more on a loaded host) of MuJoCo, MetaWorld and NumPy imports. Failed imports are skipped.
_WORKER_PRELOAD = ["kinitro_dagster.sim.rollout", "kinitro_dagster.sim.metaworld"]


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
class _WorkerJob:
    """What every worker of a partition needs besides the miner: sent once, at start."""

    env_id: str
    seeds: tuple[int, ...]
    env_config: EnvConfig | None
    client_settings: ClientSettings
    env_factory: EnvFactory
    episode_timeout_s: float | None
    worker_cpus: frozenset[int] | None


def _worker_main(conn: multiprocessing.connection.Connection, job: _WorkerJob) -> None:
    """A worker: evaluate the miners the pool sends, one at a time, until it sends None.

    The env is built once and reused across miners (`reset(seed)` fully determines an episode);
    it is rebuilt after an episode that broke on our side, in case that left it in a bad state.
    """
    env: SimEnv | None = None
    if job.worker_cpus:
        os.sched_setaffinity(0, job.worker_cpus)
    try:
        while (miner := conn.recv()) is not None:
            try:
                if env is None:
                    env = job.env_factory(job.env_id, job.env_config)
                records = evaluate_miner(
                    job.env_id,
                    miner.base_url,
                    uid=miner.uid,
                    seeds=job.seeds,
                    client_settings=job.client_settings,
                    episode_timeout_s=job.episode_timeout_s,
                    pid=miner.pid,
                    env=env,
                )
            except Exception:
                records = _evaluator_failures(miner.uid, job.seeds, traceback.format_exc(limit=3))
            if env is not None and any(r.error_kind == ErrorKind.EVALUATOR_ERROR for r in records):
                env.close()
                env = None
            conn.send(records)
    except (EOFError, KeyboardInterrupt):  # the pool went away: nothing left to report to
        pass
    finally:
        if env is not None:
            env.close()


def _evaluator_failures(uid: int, seeds: Sequence[int], reason: str) -> list[EpisodeRecord]:
    return [failed_episode(uid, i, seed, ErrorKind.EVALUATOR_ERROR, reason) for i, seed in enumerate(seeds)]


class _Worker:
    def __init__(self, context: multiprocessing.context.BaseContext, job: _WorkerJob, index: int) -> None:
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(
            target=_worker_main, args=(child_conn, job), name=f"rollout-worker-{index}", daemon=True
        )
        self.process.start()
        child_conn.close()  # so that our recv sees EOF if the worker dies
        self.miner: MinerTarget | None = None
        self.assigned_at = 0.0

    def assign(self, miner: MinerTarget) -> None:
        self.miner, self.assigned_at = miner, time.perf_counter()
        self.conn.send(miner)

    def stop(self, *, graceful: bool = True) -> None:
        """Ask an idle worker to finish (it closes its env), or kill one that is still busy."""
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
    """Workers pull miners one at a time; a dead worker's miner fails, and a new worker replaces it."""

    def __init__(self, size: int, job: _WorkerJob) -> None:
        self.size = size
        self.job = job
        self.context = worker_context()
        self._spawned = 0

    def run(self, miners: list[MinerTarget]) -> list[EpisodeRecord]:
        pending = deque(miners)
        records: list[EpisodeRecord] = []
        workers: list[_Worker] = []
        busy: list[_Worker] = []
        try:
            for _ in range(min(self.size, len(pending))):
                worker = self._spawn()
                workers.append(worker)
                worker.assign(pending.popleft())
                busy.append(worker)
            while busy:
                ready = multiprocessing.connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                for worker in list(busy):
                    outcome = self._collect(worker, ready)
                    if outcome is None:
                        continue
                    records += outcome
                    busy.remove(worker)
                    if not worker.process.is_alive() or worker.conn.closed:
                        worker.stop()
                        workers.remove(worker)
                        if not pending:
                            continue
                        worker = self._spawn()
                        workers.append(worker)
                    if pending:
                        worker.assign(pending.popleft())
                        busy.append(worker)
        finally:
            # Normally every worker is idle here; after an error (or Ctrl-C) some are mid-miner.
            for worker in workers:
                worker.stop(graceful=not busy)
        return records

    def _spawn(self) -> _Worker:
        self._spawned += 1
        return _Worker(self.context, self.job, self._spawned)

    def _collect(self, worker: _Worker, ready: list) -> list[EpisodeRecord] | None:
        """The worker's records if it finished its miner (or died trying); None if still working."""
        miner = worker.miner
        assert miner is not None
        if worker.conn in ready or worker.conn.poll():
            try:
                records = worker.conn.recv()
            except (EOFError, OSError):
                records = None
            if records is not None:
                _log_miner_outcome(self.job.env_id, miner, records, time.perf_counter() - worker.assigned_at)
                return records
        elif worker.process.sentinel not in ready:
            return None
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        reason = f"rollout worker {worker.process.name} died (exit code {code}) while evaluating uid {miner.uid}"
        logger.error(
            "rollout worker died env_id=%s uid=%d exitcode=%s",
            self.job.env_id, miner.uid, code,
            extra={"env_id": self.job.env_id, "uid": miner.uid, "exitcode": code},
        )  # fmt: skip
        records = _evaluator_failures(miner.uid, self.job.seeds, reason)
        _log_miner_outcome(self.job.env_id, miner, records, time.perf_counter() - worker.assigned_at)
        worker.conn.close()
        return records


def _log_miner_outcome(env_id: str, miner: MinerTarget, records: list[EpisodeRecord], wall_s: float) -> None:
    successes = sum(r.success for r in records)
    errors = Counter(r.error_kind for r in records if r.error_kind)
    steps = sum(r.steps for r in records)
    p50s = [r.latency_p50_ms for r in records if r.latency_p50_ms is not None]
    latency_p50 = float(np.median(p50s)) if p50s else math.nan
    errors_text = ",".join(f"{kind}:{n}" for kind, n in sorted(errors.items())) or "none"
    logger.info(
        "miner evaluated env_id=%s uid=%d episodes=%d successes=%d errors=%s steps=%d "
        "act_p50_ms=%.2f wall_s=%.1f",
        env_id, miner.uid, len(records), successes, errors_text, steps, latency_p50, wall_s,
        extra={
            "env_id": env_id, "uid": miner.uid, "episodes": len(records), "successes": successes,
            "errors": dict(errors), "steps": steps, "wall_s": wall_s,
        },
    )  # fmt: skip
