"""run_episode / evaluate_miner on real MetaWorld against real policy servers on loopback.

Every misbehaviour ends its episode with the right error kind and never raises; a crashed server
costs the rest of that miner's episodes at once, not a timeout each.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from kinitro_dagster.miners.deployments import LocalDeployment
from kinitro_dagster.miners.policy_client import ClientSettings, PolicyClient
from kinitro_dagster.protocol import ErrorKind, PolicyAction
from kinitro_dagster.sim.base import EnvConfig, make_env
from kinitro_dagster.sim.episode import evaluate_miner, run_episode

os.environ.setdefault("MUJOCO_GL", "egl")

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "policies"
ENV_ID = "metaworld/reach-v3"
MAX_STEPS = 25
CONFIG = EnvConfig(max_steps=MAX_STEPS, use_images=False)
FAST_TIMEOUTS = ClientSettings(action_timeout=0.3, reset_timeout_s=2.0)
SEEDS = [11, 22, 33]

SERVERS: dict[str, tuple[Path, dict[str, str]]] = {
    "good": (FIXTURES / "good", {}),
    "hang": (FIXTURES / "hang", {}),
    "close_connection": (FIXTURES / "close_connection", {}),
    "invalid_json": (FIXTURES / "invalid_json", {}),
    "nan": (FIXTURES / "non_finite", {"NON_FINITE": "NaN"}),
    "inf": (FIXTURES / "non_finite", {"NON_FINITE": "Infinity"}),
    "wrong_shape": (FIXTURES / "wrong_shape", {}),
    "extra_keys": (FIXTURES / "extra_keys", {}),
    "huge_body": (FIXTURES / "huge_body", {}),
    "http_500": (FIXTURES / "http_500", {}),
    "slow_act": (FIXTURES / "slow_act", {"SLOW_ACT_S": "0.05"}),
}


@pytest.fixture(scope="module")
def servers(running_deployments) -> Iterator[dict[str, LocalDeployment]]:
    deployments = {name: LocalDeployment(path, env=env) for name, (path, env) in SERVERS.items()}
    with running_deployments(deployments) as servers:
        yield servers


@pytest.fixture(scope="module")
def env():
    environment = make_env(ENV_ID, CONFIG)
    yield environment
    environment.close()


def test_good_policy_plays_every_step_and_reports_latency(servers, env):
    steps_seen: list[int] = []
    with PolicyClient(servers["good"].base_url) as client:
        record = run_episode(env, client, uid=7, episode=2, seed=123, on_step=lambda n, _: steps_seen.append(n))
    assert (record.uid, record.episode, record.seed) == (7, 2, 123)
    assert record.error_kind is None and record.error is None
    assert record.steps == MAX_STEPS
    assert steps_seen == list(range(1, MAX_STEPS + 1))
    assert 0 < record.latency_p50_ms <= record.latency_p99_ms
    assert record.wall_seconds > 0
    assert np.isfinite(record.total_reward)


def test_same_policy_and_seeds_give_the_same_episodes(servers, env):
    def outcome(records):
        return [(r.seed, r.success, r.steps, r.total_reward, r.error_kind) for r in records]

    first = evaluate_miner(ENV_ID, servers["good"].base_url, uid=1, seeds=SEEDS, env=env)
    again = evaluate_miner(ENV_ID, servers["good"].base_url, uid=1, seeds=SEEDS, env_config=CONFIG)
    assert outcome(first) == outcome(again)
    assert len({r.total_reward for r in first}) == len(SEEDS)  # different seeds, different episodes


@pytest.mark.parametrize(
    ("server", "kind"),
    [
        ("hang", ErrorKind.TIMEOUT),
        ("close_connection", ErrorKind.CONNECTION_ERROR),
        ("invalid_json", ErrorKind.INVALID_JSON),
        ("nan", ErrorKind.BAD_ACTION),
        ("inf", ErrorKind.BAD_ACTION),
        ("wrong_shape", ErrorKind.BAD_ACTION),
        ("extra_keys", ErrorKind.BAD_ACTION),
        ("huge_body", ErrorKind.RESPONSE_TOO_LARGE),
        ("http_500", ErrorKind.HTTP_ERROR),
    ],
)
def test_misbehaving_policy_fails_each_episode_with_its_kind(servers, env, server, kind):
    deployment = servers[server]
    records = evaluate_miner(
        ENV_ID, deployment.base_url, uid=3, seeds=SEEDS, client_settings=FAST_TIMEOUTS, pid=deployment.pid, env=env
    )
    assert [r.episode for r in records] == [0, 1, 2]
    assert [r.seed for r in records] == SEEDS
    assert all(r.error_kind == kind.value and r.error for r in records)
    assert not any(r.success for r in records)
    assert all(r.steps == 0 for r in records)  # each failed on its first action
    assert deployment.is_alive()  # misbehaving is not dying: every episode was tried


def test_slow_but_legal_policy_is_stopped_by_the_episode_budget(servers, env):
    with PolicyClient(servers["slow_act"].base_url) as client:
        record = run_episode(env, client, uid=6, episode=0, seed=1, eval_timeout=0.3)
    assert record.error_kind == ErrorKind.TIMEOUT.value
    assert "0.3 s budget" in record.error
    assert 1 <= record.steps < MAX_STEPS
    assert record.wall_seconds < 1.0


def test_server_crash_mid_episode_fails_the_rest_at_once(env):
    with LocalDeployment(FIXTURES / "crash", env={"CRASH_AFTER_ACTS": "5"}) as deployment:
        started = time.monotonic()
        records = evaluate_miner(
            ENV_ID,
            deployment.base_url,
            uid=4,
            seeds=SEEDS,
            client_settings=replace(FAST_TIMEOUTS, action_timeout=5.0, reset_timeout_s=5.0),
            pid=deployment.pid,
            env=env,
        )
        elapsed = time.monotonic() - started
    assert [r.error_kind for r in records] == [ErrorKind.CRASHED.value] * 3
    assert records[0].steps == 5  # five good actions, then the process died
    assert [r.steps for r in records[1:]] == [0, 0]
    assert elapsed < 3  # no 5 s timeout per remaining episode


def test_non_finite_action_refused_by_the_env_is_a_bad_action(env):
    class NanClient:  # stands in for a client whose validation let a NaN through
        def send_reset(self, task_config: dict) -> None:
            pass

        def poll(self, *, block: bool = False) -> bool:
            return True

        def receive_reset(self) -> None:
            return None

        def send_act(self, observation: dict) -> None:
            pass

        def receive_action(self) -> PolicyAction:
            return PolicyAction(ee_twist=np.full(6, np.nan), gripper=0.5)

        def close(self) -> None:
            pass

    record = run_episode(env, NanClient(), uid=5, episode=0, seed=1)
    assert record.error_kind == ErrorKind.BAD_ACTION.value
    assert "environment rejected the action" in record.error
    assert record.steps == 0 and not record.success


def test_scripted_expert_policy_succeeds_over_http():
    privileged = EnvConfig(max_steps=150, use_images=False, privileged_state=True)
    with LocalDeployment(ROOT / "examples" / "miners" / "scripted_expert") as deployment:
        records = evaluate_miner(ENV_ID, deployment.base_url, uid=0, seeds=[101, 202], env_config=privileged)
    assert [r.error_kind for r in records] == [None, None]
    assert all(r.success for r in records)


def test_episode_ends_at_first_success_unless_asked_to_play_on():
    stopping = EnvConfig(max_steps=150, use_images=False, privileged_state=True)
    playing_on = replace(stopping, stop_on_success=False)
    with LocalDeployment(ROOT / "examples" / "miners" / "scripted_expert") as deployment:
        early = evaluate_miner(ENV_ID, deployment.base_url, uid=0, seeds=[101], env_config=stopping)[0]
        full = evaluate_miner(ENV_ID, deployment.base_url, uid=0, seeds=[101], env_config=playing_on)[0]
    assert early.success and full.success
    assert early.steps < full.steps == 150
