"""A worker's miners in flight: several miners' episode generators stepped on one thread.

While a policy computes its action, its miner's env waits: one miner's episode is strictly
sequential. Other miners' episodes are not: a worker plays several miners at once
(`miners_per_worker`) and steps whichever one's policy has answered, so its core stays busy when
policy servers have CPUs of their own. Measured (benchmarks/bench_rollout.py): one worker core
playing 3 miners reaches ~0.8-0.9x stock MetaWorld stepping on that core.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import selectors
import socket
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kinitro_dagster.miners.policy_client import PolicyClient
from kinitro_dagster.protocol import ErrorKind
from kinitro_dagster.sim.base import EnvConfig, SimEnv, observed_config
from kinitro_dagster.sim.episode import MinerSteps, MinerTarget, client_for, evaluator_failures, play_miner
from kinitro_dagster.warehouse.records import EpisodeRecord

if TYPE_CHECKING:
    from kinitro_dagster.sim.workers import WorkerJob

logger = logging.getLogger(__name__)

@dataclass
class Lane:
    miner: MinerTarget
    env: SimEnv
    client: PolicyClient
    steps: MinerSteps
    config: EnvConfig  # what its env renders for this miner (`observed_config`): idle envs are reused by it
    sock: socket.socket | None = None  # registered with the selector while a response is awaited


class Lanes:
    """A worker's miners in flight, each with its own env and client, stepped as their policies answer.

    Envs are built once and reused by later miners (`reset(seed)` fully determines an episode);
    one is rebuilt after an episode that broke on our side, in case that left it in a bad state.
    Everything runs on this one thread: a lane only runs between its policy's answer and its next
    request, so lanes never contend for anything.
    """

    def __init__(self, job: WorkerJob, conn: multiprocessing.connection.Connection) -> None:
        self.job = job
        self.conn = conn
        self.selector = selectors.DefaultSelector()
        self.lanes: list[Lane] = []
        self.idle_envs: dict[EnvConfig, list[SimEnv]] = {}

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
        for env in (env for envs in self.idle_envs.values() for env in envs):
            env.close()
        self.lanes, self.idle_envs = [], {}
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

    def _lane_for(self, miner: MinerTarget) -> Lane | None:
        """A lane for the miner, ready to play; None (and its episodes reported failed) if its env cannot be built."""
        job = self.job
        try:
            config = observed_config(job.env_id, job.env_config or EnvConfig(), miner.observation)
            idle = self.idle_envs.get(config)
            env = idle.pop() if idle else job.env_factory(job.env_id, config)
        except Exception:
            self.conn.send((miner.uid, evaluator_failures(miner.uid, job.seeds, traceback.format_exc(limit=3))))
            return None
        client = client_for(miner.base_url, job.client_settings, miner.pid)
        steps = play_miner(
            env, client, uid=miner.uid, seeds=job.seeds, pid=miner.pid, eval_timeout=job.eval_timeout
        )
        lane = Lane(miner, env, client, steps, config)
        self.lanes.append(lane)
        return lane

    def _advance(self, lane: Lane, seen: float | None) -> None:
        """Run the lane up to its next request (or its end), and watch that request's connection."""
        try:
            sock = lane.steps.send(seen).pending_socket
            while sock is None:  # nothing to wait for (cannot happen after a send; never stall on it)
                sock = lane.steps.send(None).pending_socket
        except StopIteration as finished:
            self._finish(lane, finished.value)
            return
        except Exception:  # the generators catch everything a policy can cause: this is our bug
            self._finish(lane, evaluator_failures(lane.miner.uid, self.job.seeds, traceback.format_exc(limit=3)))
            return
        if sock is not lane.sock:  # a new connection (the last one failed or was closed)
            self._unwatch(lane)
            self.selector.register(sock, selectors.EVENT_READ, lane)
            lane.sock = sock

    def _finish(self, lane: Lane, records: list[EpisodeRecord]) -> None:
        self._unwatch(lane)
        lane.client.close()
        self.lanes.remove(lane)
        if any(r.error_kind == ErrorKind.EVALUATOR_ERROR for r in records):
            lane.env.close()
        else:
            self.idle_envs.setdefault(lane.config, []).append(lane.env)
        self.conn.send((lane.miner.uid, records))

    def _unwatch(self, lane: Lane) -> None:
        if lane.sock is not None:
            # A closed socket is found by object; the selector ignores the kernel's EBADF for it.
            self.selector.unregister(lane.sock)
            lane.sock = None
