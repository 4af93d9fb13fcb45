"""Every way a policy server can misbehave maps onto one error kind (DESIGN §6)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kinitro_dagster.miners.deployments import LocalDeployment
from kinitro_dagster.miners.policy_client import PolicyClient
from kinitro_dagster.protocol import ErrorKind, PolicyError, parse_action

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "policies"
TASK_CONFIG = {"env_id": "metaworld/reach-v3", "env_name": "metaworld", "task_name": "reach-v3", "task_id": 0}
OBSERVATION = {"rgb": {}, "depth": {}, "proprio": {}, "cam_intrinsics": {}, "cam_extrinsics": {}, "extra": {}}
ACT_TIMEOUT_S = 0.3


# Fixture servers that survive their misbehaviour, started together once per module.
SURVIVORS: dict[str, tuple[str, dict[str, str]]] = {
    "invalid_json": ("invalid_json", {}),
    "nan": ("non_finite", {"NON_FINITE": "NaN"}),
    "inf": ("non_finite", {"NON_FINITE": "Infinity"}),
    "minus_inf": ("non_finite", {"NON_FINITE": "-Infinity"}),
    "overflow": ("non_finite", {"NON_FINITE": "1e999"}),
    "wrong_shape": ("wrong_shape", {}),
    "extra_keys": ("extra_keys", {}),
    "huge_body": ("huge_body", {}),
    "huge_chunked_body": ("huge_body", {"FIXTURE_CHUNKED": "1"}),
    "http_500": ("http_500", {}),
    "close_connection": ("close_connection", {}),
    "hang": ("hang", {}),
    "partial_response": ("partial_response", {}),
}


@pytest.fixture(scope="module")
def servers(running_deployments) -> Iterator[dict[str, LocalDeployment]]:
    deployments = {name: LocalDeployment(FIXTURES / d, env=env) for name, (d, env) in SURVIVORS.items()}
    with running_deployments(deployments) as servers:
        yield servers


def first_act_error(deployment: LocalDeployment) -> PolicyError:
    with PolicyClient(deployment.base_url, action_timeout=ACT_TIMEOUT_S, is_alive=deployment.is_alive) as client:
        client.reset(TASK_CONFIG)
        with pytest.raises(PolicyError) as error:
            for _ in range(10):
                client.act(OBSERVATION)
        assert client._sock is None, "the connection must be dropped after an error"
        return error.value


@pytest.mark.parametrize(
    ("server", "kind", "message"),
    [
        ("invalid_json", ErrorKind.INVALID_JSON, "not JSON"),
        ("nan", ErrorKind.BAD_ACTION, "non-finite"),
        ("inf", ErrorKind.BAD_ACTION, "non-finite"),
        ("minus_inf", ErrorKind.BAD_ACTION, "non-finite"),
        ("overflow", ErrorKind.BAD_ACTION, "non-finite"),
        ("wrong_shape", ErrorKind.BAD_ACTION, "must be 6 numbers, got list of 5"),
        ("extra_keys", ErrorKind.BAD_ACTION, "joint_pos"),
        ("huge_body", ErrorKind.RESPONSE_TOO_LARGE, "exceeds 65536 B"),
        ("huge_chunked_body", ErrorKind.RESPONSE_TOO_LARGE, "exceeds 65536 B"),
        ("http_500", ErrorKind.HTTP_ERROR, "HTTP 500"),
        ("close_connection", ErrorKind.CONNECTION_ERROR, "closed"),
        ("partial_response", ErrorKind.TIMEOUT, "no complete response within 0.3 s"),
    ],
)
def test_misbehaving_policy_raises_its_error_kind(servers, server, kind, message):
    error = first_act_error(servers[server])
    assert error.kind is kind
    assert message in error.message


def test_http_error_carries_status_and_a_snippet_of_the_body(servers):
    error = first_act_error(servers["http_500"])
    assert "HTTP 500" in error.message and "CUDA out of memory" in error.message


def test_hung_policy_times_out_at_the_act_timeout(servers):
    started = time.monotonic()
    error = first_act_error(servers["hang"])
    assert error.kind is ErrorKind.TIMEOUT
    assert "0.3 s" in error.message
    assert time.monotonic() - started < 3  # one timeout (plus a reset), not a long wait


def test_server_process_that_dies_mid_episode_is_crashed():
    with LocalDeployment(FIXTURES / "crash", env={"CRASH_AFTER_ACTS": "2"}) as deployment:
        error = first_act_error(deployment)
    assert error.kind is ErrorKind.CRASHED


def test_without_a_liveness_probe_a_dead_server_is_a_connection_error():
    deployment = LocalDeployment(FIXTURES / "crash", env={"CRASH_AFTER_ACTS": "0"})
    with deployment, PolicyClient(deployment.base_url) as client, pytest.raises(PolicyError) as error:
        client.act(OBSERVATION)
    assert error.value.kind is ErrorKind.CONNECTION_ERROR


# -- what parse_action accepts (no server needed) -------------------------------------------------


def body(ee_twist: object = (0.0,) * 6, gripper: object = (0.5,), **more: object) -> dict:
    continuous = {"ee_twist": list(ee_twist) if isinstance(ee_twist, tuple) else ee_twist}
    continuous["gripper"] = list(gripper) if isinstance(gripper, tuple) else gripper
    continuous.update(more)
    return {"action": {"continuous": continuous, "discrete": {"mode": [1]}, "extra": {"note": "x"}}}


@pytest.mark.parametrize(("gripper", "expected"), [((1.0000001,), 1.0), ((-0.2,), 0.0), ((0.25,), 0.25), (1, 1.0)])
def test_finite_gripper_outside_unit_range_is_clipped_and_a_bare_number_accepted(gripper, expected):
    assert parse_action(body(gripper=gripper)).gripper == expected


def test_integers_are_numbers_and_twist_is_passed_on_unclipped():
    action = parse_action(body(ee_twist=(0, 1, -3, 0, 0, 2.5)))
    assert action.ee_twist.tolist() == [0.0, 1.0, -3.0, 0.0, 0.0, 2.5]
    assert action.ee_twist.dtype.kind == "f"


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"action": None},
        {"action": {"continuous": []}},
        body(ee_twist=None),
        body(gripper=None),
        body(gripper=(0.1, 0.2)),
        body(ee_twist=(0.0,) * 7),
        body(ee_twist=[[0.0] * 6]),
        body(ee_twist=(0.0, 0.0, 0.0, 0.0, 0.0, "1")),
        body(ee_twist=(0.0, 0.0, 0.0, 0.0, 0.0, True)),
        body(ee_twist=(0.0, 0.0, 0.0, 0.0, 0.0, 10**400)),
        body(gripper=(float("nan"),)),
        body(joint_pos=[0.0]),
    ],
)
def test_malformed_actions_are_bad_actions(payload):
    with pytest.raises(PolicyError) as error:
        parse_action(payload)
    assert error.value.kind is ErrorKind.BAD_ACTION


# -- a request in two halves (send now, receive later), as a worker interleaving miners uses it --


def test_a_response_that_arrived_in_time_counts_when_it_is_read_late(servers):
    with PolicyClient(servers["extra_keys"].base_url, action_timeout=ACT_TIMEOUT_S) as client:
        client.reset(TASK_CONFIG)
        client.send_act(OBSERVATION)
        assert client.pending_socket is not None
        time.sleep(ACT_TIMEOUT_S + 0.1)  # busy with other miners past the deadline
        with pytest.raises(PolicyError) as error:
            client.receive_action()
    # The response was there: it is judged on its content (extra keys), not called a timeout.
    assert error.value.kind is ErrorKind.BAD_ACTION
    assert client.pending_socket is None


def test_no_response_by_the_deadline_is_a_timeout_without_waiting_again(servers):
    with PolicyClient(servers["hang"].base_url, action_timeout=ACT_TIMEOUT_S) as client:
        client.reset(TASK_CONFIG)
        client.send_act(OBSERVATION)
        deadline = client.pending_deadline
        assert deadline is not None and deadline > time.monotonic()
        time.sleep(ACT_TIMEOUT_S + 0.1)
        started = time.monotonic()
        with pytest.raises(PolicyError) as error:
            client.receive_action()
    assert error.value.kind is ErrorKind.TIMEOUT
    assert time.monotonic() - started < 0.1
    assert client.pending_socket is None and client.pending_deadline is None


def test_receive_without_a_request_is_a_programming_error(servers):
    with PolicyClient(servers["hang"].base_url) as client, pytest.raises(RuntimeError, match="no request is pending"):
        client.receive_action()


def test_poll_collects_a_response_in_pieces_and_never_waits_for_it(servers):
    with PolicyClient(servers["partial_response"].base_url, action_timeout=ACT_TIMEOUT_S) as client:
        client.reset(TASK_CONFIG)
        client.send_act(OBSERVATION)
        time.sleep(0.1)  # the head and half the body are here
        started = time.monotonic()
        assert client.poll() is False
        assert time.monotonic() - started < 0.05
        assert client._received.startswith(b"HTTP/1.1 200")  # kept for the next poll
        time.sleep(ACT_TIMEOUT_S)
        assert client.poll() is True  # the deadline passed: the request is over
        with pytest.raises(PolicyError) as error:
            client.receive_action()
    assert error.value.kind is ErrorKind.TIMEOUT
