"""One episode and one miner's episodes of a policy in a simulated environment.

- `run_episode`: one seeded episode of one policy. A misbehaving policy (timeout, crash, bad
  action, ...) ends its episode as a failure with an error kind; nothing a policy does raises here.
- `evaluate_miner`: all episodes of one miner on one env, reusing one env instance. Once the
  miner's server is known dead, its remaining episodes fail at once as `crashed`.

Both come as generators too (`play_episode`, `play_miner`) for a caller that keeps several
miners in flight on one thread (`sim.lanes`). A partition's miners are spread over worker
processes by `sim.workers.evaluate_partition`.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kinitro_dagster.miners.deployments import process_is_alive
from kinitro_dagster.miners.policy_client import ClientSettings, PolicyClient
from kinitro_dagster.protocol import ErrorKind, ObservationRequest, PolicyError
from kinitro_dagster.sim.base import EnvConfig, SimEnv, StepResult, make_env
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
    observation: ObservationRequest | None = None  # what its /health declared it reads; None: everything


# -- one episode ---------------------------------------------------------------------------------

# An episode (or a miner's episodes) as a generator: it yields its client each time it has sent a
# request and waits for the response, and returns its record(s). `drive` plays it sequentially,
# blocking on each response; a worker's `Lanes` plays several miners' generators at once, stepping
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


def run_episode(env: SimEnv, client: PolicyClient, **episode: Any) -> EpisodeRecord:
    """`play_episode` played to its end, blocking on each response (the same keyword arguments)."""
    return drive(play_episode(env, client, **episode))


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
    """Play one episode; policy misbehaviour ends it as a failure with `error_kind` set, never raises.

    A generator (see `EpisodeSteps`); `run_episode` plays it sequentially. `on_step(step_number,
    result)` is called after every env step (1-based), e.g. to record frames. `eval_timeout`
    bounds the whole episode (the operator's eval timeout): a policy that answers each /act just
    inside the act timeout cannot stretch an episode to 500 x 0.5 s.
    """
    started = time.perf_counter()
    latencies: list[float] = []
    steps, total_reward, success = 0, 0.0, False
    error_kind: str | None = None
    error: str | None = None
    try:
        observation = env.reset(seed)
        client.send_reset(env.task_config())
        yield from response_of(client)
        client.receive_reset()
        while True:
            asked = time.perf_counter()
            client.send_act(observation)
            answered = yield from response_of(client)
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
    p50, p99 = latency_percentiles_ms(latencies)
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


def response_of(client: PolicyClient) -> Generator[PolicyClient, float | None, float | None]:
    """Wait for the client's pending response: yield until it is complete (or failed).

    A driver that resumes with None (`drive`) wants this to block; one that resumes with the time
    it saw the socket readable (`Lanes`) gets a non-blocking read, and the generator yields again
    if the response is still incomplete. Returns the driver's time stamp, if any.
    """
    answered = yield client
    while not client.poll(block=answered is None):
        answered = yield client
    return answered


def latency_percentiles_ms(latencies: list[float]) -> tuple[float | None, float | None]:
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
    client = client_for(base_url, client_settings, pid)
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
            records += skip_crashed(uid, seeds, start=episode)
            break
        record = yield from play_episode(
            env, client, uid=uid, episode=episode, seed=seed, eval_timeout=eval_timeout
        )
        records.append(record)
    return records


def client_for(base_url: str, settings: ClientSettings | None, pid: int | None) -> PolicyClient:
    is_alive = (lambda: process_is_alive(pid)) if pid is not None else None
    return PolicyClient.from_settings(base_url, settings or ClientSettings(), is_alive=is_alive)


def skip_crashed(uid: int, seeds: Sequence[int], *, start: int) -> list[EpisodeRecord]:
    reason = "policy server process is gone; episode not played"
    return failed_episodes(uid, seeds, ErrorKind.CRASHED, reason, start=start)


def evaluator_failures(uid: int, seeds: Sequence[int], reason: str) -> list[EpisodeRecord]:
    return failed_episodes(uid, seeds, ErrorKind.EVALUATOR_ERROR, reason)


def log_miner_outcome(env_id: str, miner: MinerTarget, records: list[EpisodeRecord], wall_s: float) -> None:
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
