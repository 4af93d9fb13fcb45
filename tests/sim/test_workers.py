"""evaluate_partition: miners sharded over spawned workers; one bad miner (or a dying worker)
never costs the others their results."""

from __future__ import annotations

import ctypes
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kinitro_dagster.miners.deployments import LocalDeployment
from kinitro_dagster.miners.policy_client import ClientSettings
from kinitro_dagster.protocol import ErrorKind, PolicyAction
from kinitro_dagster.sim.base import EnvConfig, SimEnv, StepResult, make_env
from kinitro_dagster.sim.episode import MinerTarget, evaluate_miner
from kinitro_dagster.sim.workers import evaluate_partition

os.environ.setdefault("MUJOCO_GL", "egl")

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "policies"
ENV_ID = "metaworld/reach-v3"
CONFIG = EnvConfig(max_steps=20, use_images=False)
SEEDS = [5, 6, 7]
POISON_GRIPPER = 0.4242  # what tests/fixtures/policies/poison answers with


class SegfaultOnPoison:
    """A MetaWorld env that segfaults its process on one particular action, as a simulator bug might."""

    def __init__(self, env: SimEnv) -> None:
        self._env = env
        self.env_id = env.env_id
        self.config = env.config

    def reset(self, seed: int) -> dict:
        return self._env.reset(seed)

    def step(self, action: PolicyAction) -> StepResult:
        if abs(action.gripper - POISON_GRIPPER) < 1e-9:
            ctypes.string_at(0)  # reads address 0: SIGSEGV
        return self._env.step(action)

    def task_config(self) -> dict:
        return self._env.task_config()

    def close(self) -> None:
        self._env.close()


def segfaulting_env_factory(env_id: str, config: EnvConfig | None) -> SimEnv:
    return SegfaultOnPoison(make_env(env_id, config))


@pytest.fixture(scope="module")
def miners(running_deployments) -> Iterator[dict[str, LocalDeployment]]:
    deployments = {
        "poison": LocalDeployment(FIXTURES / "poison"),
        "good": LocalDeployment(FIXTURES / "good"),
        "hang": LocalDeployment(FIXTURES / "hang"),
        "crash": LocalDeployment(FIXTURES / "crash", env={"CRASH_AFTER_ACTS": "4"}),
        "http_500": LocalDeployment(FIXTURES / "http_500"),
    }
    with running_deployments(deployments) as servers:
        yield servers


@pytest.mark.parametrize("miners_per_worker", [1, 3])
def test_good_miner_is_unaffected_by_bad_miners_and_a_dying_worker(miners, caplog, miners_per_worker):
    """With several miners per worker the poison miner's segfault takes its worker's other miners
    down with it: they are played again alone, and end exactly as if nothing had happened."""
    uids = {"poison": 40, "good": 10, "hang": 30, "crash": 20, "http_500": 50}
    targets = [MinerTarget(uids[name], d.base_url, d.pid) for name, d in miners.items()]
    with caplog.at_level(logging.INFO, logger="kinitro_dagster.sim"):
        records = evaluate_partition(
            ENV_ID,
            targets,
            SEEDS,
            CONFIG,
            max_workers=2,
            miners_per_worker=miners_per_worker,
            client_settings=ClientSettings(action_timeout=0.3),
            env_factory=segfaulting_env_factory,
        )

    assert len(records) == len(targets) * len(SEEDS)
    assert [(r.uid, r.episode) for r in records] == sorted((uid, i) for uid in uids.values() for i in range(3))
    by_uid = {uid: [r for r in records if r.uid == uid] for uid in uids.values()}

    good = by_uid[uids["good"]]
    assert [r.error_kind for r in good] == [None, None, None]
    assert [r.steps for r in good] == [CONFIG.max_steps] * 3
    # The same episodes as evaluating the good miner alone: the others did not disturb it.
    alone = evaluate_miner(ENV_ID, miners["good"].base_url, uid=uids["good"], seeds=SEEDS, env_config=CONFIG)
    assert [(r.total_reward, r.success) for r in good] == [(r.total_reward, r.success) for r in alone]

    kinds = {name: {r.error_kind for r in by_uid[uid]} for name, uid in uids.items()}
    assert kinds["poison"] == {ErrorKind.EVALUATOR_ERROR.value}
    assert "died" in by_uid[uids["poison"]][0].error
    assert kinds["hang"] == {ErrorKind.TIMEOUT.value}
    assert kinds["crash"] == {ErrorKind.CRASHED.value}
    assert kinds["http_500"] == {ErrorKind.HTTP_ERROR.value}

    retried = {r.uid for r in caplog.records if "retry_alone=True" in r.getMessage()}
    if miners_per_worker > 1:  # the poison miner shared its worker, so everyone there was retried
        assert uids["poison"] in retried and len(retried) > 1
    else:
        assert not retried
    outcome_lines = [r for r in caplog.records if r.getMessage().startswith("miner evaluated")]
    assert sorted(r.uid for r in outcome_lines) == sorted(uids.values())  # one line per miner


def test_no_miners_means_no_rows_and_no_workers():
    assert evaluate_partition(ENV_ID, [], SEEDS, CONFIG) == []


def test_duplicate_uids_are_refused():
    targets = [MinerTarget(1, "http://127.0.0.1:1"), MinerTarget(1, "http://127.0.0.1:2")]
    with pytest.raises(ValueError, match="unique"):
        evaluate_partition(ENV_ID, targets, SEEDS, CONFIG)


def test_unknown_env_id_is_refused_before_any_worker_starts():
    with pytest.raises(ValueError, match="unknown env id"):
        evaluate_partition("metaworld/fly-v9", [MinerTarget(1, "http://127.0.0.1:1")], SEEDS, CONFIG)


def test_a_worker_steps_other_miners_while_one_policy_computes(running_deployments):
    """One worker, three miners at once: two policies take 50 ms an action, one answers at once.
    Played one after another the slow miners' episodes would add up; interleaved, they overlap,
    and every miner's episodes are the ones it plays alone."""
    deployments = {
        "slow_a": LocalDeployment(FIXTURES / "slow_act", env={"SLOW_ACT_S": "0.05"}),
        "slow_b": LocalDeployment(FIXTURES / "slow_act", env={"SLOW_ACT_S": "0.05"}),
        "fast": LocalDeployment(FIXTURES / "good"),
    }
    with running_deployments(deployments) as servers:
        targets = [MinerTarget(uid, d.base_url, d.pid) for uid, d in enumerate(servers.values())]
        evaluate_partition(ENV_ID, targets[2:], SEEDS[:1], CONFIG, max_workers=1)  # the fork server is up
        started = time.perf_counter()
        records = evaluate_partition(ENV_ID, targets, SEEDS, CONFIG, max_workers=1, miners_per_worker=3)
        elapsed = time.perf_counter() - started
        alone = evaluate_miner(ENV_ID, servers["fast"].base_url, uid=2, seeds=SEEDS, env_config=CONFIG)

    assert [r.error_kind for r in records] == [None] * 9
    wall = {uid: sum(r.wall_seconds for r in records if r.uid == uid) for uid in range(3)}
    slow_floor = len(SEEDS) * CONFIG.max_steps * 0.05  # 3 s of policy time per slow miner
    assert wall[0] >= slow_floor and wall[1] >= slow_floor
    assert elapsed < wall[0] + wall[1]  # the slow miners' episodes overlapped
    assert wall[2] < slow_floor  # and the fast miner was not held to their pace
    fast = [r for r in records if r.uid == 2]
    assert [(r.total_reward, r.steps) for r in fast] == [(r.total_reward, r.steps) for r in alone]


def test_a_policy_that_sends_half_a_response_does_not_hold_up_the_others(running_deployments):
    """The dribbler's episodes end at its act timeout (1 s each); meanwhile the worker keeps
    stepping the good miner, whose episodes take a fraction of that."""
    deployments = {
        "dribble": LocalDeployment(FIXTURES / "partial_response"),
        "good": LocalDeployment(FIXTURES / "good"),
    }
    with running_deployments(deployments) as servers:
        targets = [MinerTarget(uid, d.base_url, d.pid) for uid, d in enumerate(servers.values())]
        records = evaluate_partition(
            ENV_ID,
            targets,
            SEEDS,
            CONFIG,
            max_workers=1,
            miners_per_worker=2,
            client_settings=ClientSettings(action_timeout=1.0),
        )

    dribbled = [r for r in records if r.uid == 0]
    good = [r for r in records if r.uid == 1]
    assert [r.error_kind for r in dribbled] == [ErrorKind.TIMEOUT.value] * len(SEEDS)
    assert [r.error_kind for r in good] == [None] * len(SEEDS)
    # Waiting on the half-sent responses would add the dribbler's three 1 s timeouts to these.
    assert sum(r.wall_seconds for r in good) < 1.0


def test_each_worker_renders_on_the_egl_device_it_is_given(running_deployments):
    # This host has one EGL device (llvmpipe, 0): a worker given it renders; one given a device the
    # host lacks fails its miner's episodes as the evaluator's error, naming MuJoCo's variable.
    with running_deployments({"good": LocalDeployment(FIXTURES / "good")}) as servers:
        miner = MinerTarget(uid=0, base_url=servers["good"].base_url, pid=servers["good"].pid)
        images = EnvConfig(max_steps=3)
        played = evaluate_partition(ENV_ID, [miner], SEEDS[:1], images, render_devices=[0])
        missing = evaluate_partition(ENV_ID, [miner], SEEDS[:1], images, render_devices=[7])
    assert [r.error_kind for r in played] == [None] and played[0].steps == 3
    assert [r.error_kind for r in missing] == [ErrorKind.EVALUATOR_ERROR]
    assert "MUJOCO_EGL_DEVICE_ID" in missing[0].error
