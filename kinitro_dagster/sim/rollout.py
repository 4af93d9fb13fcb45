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
strictly sequential. Other miners' episodes are not: a worker plays several miners at once
(`miners_per_worker`) and steps whichever one's policy has answered, so its core stays busy when
policy servers have CPUs of their own. Measured (benchmarks/bench_rollout.py): one worker core
playing 3 miners reaches ~0.8-0.9x stock MetaWorld stepping on that core.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import selectors
import socket
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import numpy as np

from kinitro_dagster.miners.deployments import process_is_alive
from kinitro_dagster.miners.policy_client import ClientSettings, PolicyClient
from kinitro_dagster.protocol import ErrorKind, PolicyError
from kinitro_dagster.sim.base import EnvConfig, SimEnv, StepResult, make_env
from kinitro_dagster.sim.registry import preload_modules, validate_env_id
from kinitro_dagster.warehouse.records import ERROR_TEXT_CHARS, EpisodeRecord, failed_episodes

logger = logging.getLogger(__name__)

EnvFactory = Callable[[str, EnvConfig | None], SimEnv]
OnStep = Callable[[int, StepResult], None]



@dataclass(frozen=True)
class MinerTarget:
    """A miner's running policy server, as a partition sees it. Picklable for worker processes."""

    uid: int
    base_url: str
    # Local deployments: the server's process id, so that a worker can tell a crashed server
    # (`crashed`, remaining episodes skipped) from a slow or unreachable one.
    pid: int | None = None


# -- one episode ---------------------------------------------------------------------------------

# An episode (or a miner's episodes) as a generator: it yields its client each time it has sent a
# request and waits for the response, and returns its record(s). `drive` plays it sequentially,
# blocking on each response; a worker's `_Lanes` plays several miners' generators at once, stepping
# one miner's env while the others' policies compute. The driver may send back the
# `time.perf_counter()` at which it saw the response arrive (None: now), so that the recorded
# latency does not include time spent stepping other miners' envs.
EpisodeSteps = Generator[PolicyClient, float | None, EpisodeRecord]
MinerSteps = Generator[PolicyClient, float | None, list[EpisodeRecord]]


def drive[T](steps: Generator[PolicyClient, float | None, T]) -> T:
    """Play an episode generator to its end, blocking on each response (the client's own timeouts apply)."""
    try:
        while True:
            next(steps)
    except StopIteration as finished:
        return finished.value


def run_episode(
    env: SimEnv,
    client: PolicyClient,
    *,
    uid: int,
    episode: int,
    seed: int,
    on_step: OnStep | None = None,
    eval_timeout: float | None = None,
) -> EpisodeRecord:
    """Play one episode; policy misbehaviour ends it as a failure with `error_kind` set, never raises.

    `on_step(step_number, result)` is called after every env step (1-based), e.g. to record frames.
    `eval_timeout` bounds the whole episode (the operator's eval timeout): a policy that
    answers each /act just inside the act timeout cannot stretch an episode to 500 x 0.5 s.
    """
    return drive(
        play_episode(
            env, client, uid=uid, episode=episode, seed=seed, on_step=on_step, eval_timeout=eval_timeout
        )
    )


def play_episode(
    env: SimEnv,
    client: PolicyClient,
    *,
    uid: int,
    episode: int,
    seed: int,
    on_step: OnStep | None = None,
    eval_timeout: float | None = None,
) -> EpisodeSteps:
    """`run_episode` as a generator (see `EpisodeSteps`)."""
    started = time.perf_counter()
    latencies: list[float] = []
    steps, total_reward, success = 0, 0.0, False
    error_kind: str | None = None
    error: str | None = None
    try:
        observation = env.reset(seed)
        client.send_reset(env.task_config())
        yield from _response_of(client)
        client.receive_reset()
        while True:
            asked = time.perf_counter()
            client.send_act(observation)
            answered = yield from _response_of(client)
            action = client.receive_action()
            latencies.append((answered or time.perf_counter()) - asked)
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
            if eval_timeout is not None and time.perf_counter() - started > eval_timeout:
                raise PolicyError(
                    ErrorKind.TIMEOUT, f"episode took longer than its {eval_timeout:g} s budget (eval timeout)"
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
        error=error[:ERROR_TEXT_CHARS] if error else None,
        latency_p50_ms=p50,
        latency_p99_ms=p99,
    )


def _response_of(client: PolicyClient) -> Generator[PolicyClient, float | None, float | None]:
    """Wait for the client's pending response: yield until it is complete (or failed).

    A driver that resumes with None (`drive`) wants this to block; one that resumes with the time
    it saw the socket readable (`_Lanes`) gets a non-blocking read, and the generator yields again
    if the response is still incomplete. Returns the driver's time stamp, if any.
    """
    answered = yield client
    while not client.poll(block=answered is None):
        answered = yield client
    return answered


def _latency_percentiles_ms(latencies: list[float]) -> tuple[float | None, float | None]:
    if not latencies:
        return None, None
    p50, p99 = np.percentile(latencies, [50, 99])
    return float(p50) * 1e3, float(p99) * 1e3


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
    eval_timeout: float | None = None,
) -> list[EpisodeRecord]:
    """Episode `i` of the result plays `seeds[i]`. Builds (and closes) its env unless `env` is given."""
    client = _client_for(base_url, client_settings, pid)
    own_env = env is None
    try:
        if env is None:
            env = env_factory(env_id, env_config)
        return drive(play_miner(env, client, uid=uid, seeds=seeds, pid=pid, eval_timeout=eval_timeout))
    finally:
        client.close()
        if own_env and env is not None:
            env.close()


def play_miner(
    env: SimEnv,
    client: PolicyClient,
    *,
    uid: int,
    seeds: Sequence[int],
    pid: int | None = None,
    eval_timeout: float | None = None,
) -> MinerSteps:
    """`evaluate_miner` as a generator on a given env and client (see `EpisodeSteps`)."""
    records: list[EpisodeRecord] = []
    for episode, seed in enumerate(seeds):
        server_gone = bool(records) and records[-1].error_kind == ErrorKind.CRASHED
        if server_gone or (pid is not None and not process_is_alive(pid)):
            records += _skip_crashed(uid, seeds, start=episode)
            break
        record = yield from play_episode(
            env, client, uid=uid, episode=episode, seed=seed, eval_timeout=eval_timeout
        )
        records.append(record)
    return records


def _client_for(base_url: str, settings: ClientSettings | None, pid: int | None) -> PolicyClient:
    is_alive = (lambda: process_is_alive(pid)) if pid is not None else None
    return PolicyClient.from_settings(base_url, settings or ClientSettings(), is_alive=is_alive)


def _skip_crashed(uid: int, seeds: Sequence[int], *, start: int) -> list[EpisodeRecord]:
    reason = "policy server process is gone; episode not played"
    return failed_episodes(uid, seeds, ErrorKind.CRASHED, reason, start=start)


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
) -> list[EpisodeRecord]:
    """Every miner's episodes on `env_id`, sharded over worker processes (see `worker_context`).

    `max_workers` defaults to the cores the workers may use (`worker_cpus`, else this process's).
    Each worker plays up to `miners_per_worker` miners at once, one env each: it steps whichever
    miner's policy has answered, so its core is not idle while a policy computes (policies on CPUs
    of their own: docker limits, remote hosts). Each extra miner costs one more env in memory.
    None: `default_miners_per_worker(env_config)`.
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
    job = _WorkerJob(
        env_id,
        tuple(seeds),
        env_config,
        client_settings or ClientSettings(),
        env_factory,
        eval_timeout,
        worker_cpus,
        miners_per_worker,
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
    ~27 MiB more; a worker holds 246 MiB with three). 1 with images, where rendering is most of a
    step and a worker holds 365 MiB with one env and its renderer, 521 MiB with two (DESIGN §11:
    an episode worker <= 512 MiB)."""
    return 1 if (env_config or EnvConfig()).use_images else 3


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# Imported once by the fork server, so that a new worker starts in milliseconds instead of paying
# ~5 s (more on a loaded host) of MuJoCo, MetaWorld and NumPy imports. Failed imports are skipped.
_WORKER_PRELOAD = ["kinitro_dagster.sim.rollout", *preload_modules()]


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
    """What every worker of a partition needs besides the miners: sent once, at start."""

    env_id: str
    seeds: tuple[int, ...]
    env_config: EnvConfig | None
    client_settings: ClientSettings
    env_factory: EnvFactory
    eval_timeout: float | None
    worker_cpus: frozenset[int] | None
    miners_per_worker: int


def _worker_main(conn: multiprocessing.connection.Connection, job: _WorkerJob) -> None:
    """A worker: play the miners the pool sends (up to `job.miners_per_worker` at once) until it sends None.

    Each finished miner goes back as `(uid, records)`.
    """
    if job.worker_cpus:
        os.sched_setaffinity(0, job.worker_cpus)
    lanes = _Lanes(job, conn)
    try:
        lanes.serve()
    except (EOFError, KeyboardInterrupt):  # the pool went away: nothing left to report to
        pass
    finally:
        lanes.close()


@dataclass
class _Lane:
    miner: MinerTarget
    env: SimEnv
    client: PolicyClient
    steps: MinerSteps
    sock: socket.socket | None = None  # registered with the selector while a response is awaited


class _Lanes:
    """A worker's miners in flight, each with its own env and client, stepped as their policies answer.

    Envs are built once and reused by later miners (`reset(seed)` fully determines an episode);
    one is rebuilt after an episode that broke on our side, in case that left it in a bad state.
    Everything runs on this one thread: a lane only runs between its policy's answer and its next
    request, so lanes never contend for anything.
    """

    def __init__(self, job: _WorkerJob, conn: multiprocessing.connection.Connection) -> None:
        self.job = job
        self.conn = conn
        self.selector = selectors.DefaultSelector()
        self.lanes: list[_Lane] = []
        self.idle_envs: list[SimEnv] = []

    def serve(self) -> None:
        self.selector.register(self.conn, selectors.EVENT_READ, None)
        wait_s: float | None = None
        while True:
            events = self.selector.select(wait_s)
            seen = time.perf_counter()
            for key, _ in events:
                if key.data is not None:
                    self._advance(key.data, seen)
                elif not self._take_miners():
                    return
            wait_s = self._expire_overdue()

    def close(self) -> None:
        for lane in self.lanes:
            lane.client.close()
            lane.env.close()
        for env in self.idle_envs:
            env.close()
        self.lanes, self.idle_envs = [], []
        self.selector.close()

    def _expire_overdue(self) -> float | None:
        """Advance the lanes whose response is overdue (their poll reports the timeout); returns the
        seconds until the next deadline of any lane (None: nothing pending)."""
        now = time.monotonic()
        next_deadline: float | None = None
        for lane in list(self.lanes):
            deadline = lane.client.pending_deadline
            if deadline is not None and deadline <= now:
                self._advance(lane, time.perf_counter())
                deadline = lane.client.pending_deadline  # of its next request, if the lane goes on
            if deadline is not None and (next_deadline is None or deadline < next_deadline):
                next_deadline = deadline
        return None if next_deadline is None else max(0.0, next_deadline - time.monotonic())

    def _take_miners(self) -> bool:
        """Start every miner the pool has sent; False when it sent None (stop).

        All their envs are built before any of them plays: building one takes ~0.3 s, and a miner
        already playing would spend that waiting, its episode's wall time with it.
        """
        started = []
        while True:
            miner = self.conn.recv()
            if miner is None:
                return False
            if (lane := self._lane_for(miner)) is not None:
                started.append(lane)
            if not self.conn.poll():
                break
        for lane in started:
            self._advance(lane, None)
        return True

    def _lane_for(self, miner: MinerTarget) -> _Lane | None:
        """A lane for the miner, ready to play; None (and its episodes reported failed) if its env cannot be built."""
        job = self.job
        try:
            env = self.idle_envs.pop() if self.idle_envs else job.env_factory(job.env_id, job.env_config)
        except Exception:
            self.conn.send((miner.uid, _evaluator_failures(miner.uid, job.seeds, traceback.format_exc(limit=3))))
            return None
        client = _client_for(miner.base_url, job.client_settings, miner.pid)
        steps = play_miner(
            env, client, uid=miner.uid, seeds=job.seeds, pid=miner.pid, eval_timeout=job.eval_timeout
        )
        lane = _Lane(miner, env, client, steps)
        self.lanes.append(lane)
        return lane

    def _advance(self, lane: _Lane, seen: float | None) -> None:
        """Run the lane up to its next request (or its end), and watch that request's connection."""
        try:
            sock = lane.steps.send(seen).pending_socket
            while sock is None:  # nothing to wait for (cannot happen after a send; never stall on it)
                sock = lane.steps.send(None).pending_socket
        except StopIteration as finished:
            self._finish(lane, finished.value)
            return
        except Exception:  # the generators catch everything a policy can cause: this is our bug
            self._finish(lane, _evaluator_failures(lane.miner.uid, self.job.seeds, traceback.format_exc(limit=3)))
            return
        if sock is not lane.sock:  # a new connection (the last one failed or was closed)
            self._unwatch(lane)
            self.selector.register(sock, selectors.EVENT_READ, lane)
            lane.sock = sock

    def _finish(self, lane: _Lane, records: list[EpisodeRecord]) -> None:
        self._unwatch(lane)
        lane.client.close()
        self.lanes.remove(lane)
        if any(r.error_kind == ErrorKind.EVALUATOR_ERROR for r in records):
            lane.env.close()
        else:
            self.idle_envs.append(lane.env)
        self.conn.send((lane.miner.uid, records))

    def _unwatch(self, lane: _Lane) -> None:
        if lane.sock is not None:
            # A closed socket is found by object; the selector ignores the kernel's EBADF for it.
            self.selector.unregister(lane.sock)
            lane.sock = None


def _evaluator_failures(uid: int, seeds: Sequence[int], reason: str) -> list[EpisodeRecord]:
    return failed_episodes(uid, seeds, ErrorKind.EVALUATOR_ERROR, reason)


class _Worker:
    def __init__(self, context: multiprocessing.context.BaseContext, job: _WorkerJob, index: int) -> None:
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(
            target=_worker_main, args=(child_conn, job), name=f"rollout-worker-{index}", daemon=True
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

    def __init__(self, size: int, job: _WorkerJob) -> None:
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
        _log_miner_outcome(self.job.env_id, miner, records, time.perf_counter() - assigned_at)
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
            lost = _evaluator_failures(miner.uid, self.job.seeds, reason)
            _log_miner_outcome(self.job.env_id, miner, lost, time.perf_counter() - assigned_at)
            records += lost
        worker.in_flight.clear()
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
