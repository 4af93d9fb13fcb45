"""PolicyClient against well-behaved policy servers on loopback: the protocol as miners see it."""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kinitro_dagster.miners.deployments import LocalDeployment
from kinitro_dagster.miners.policy_client import PolicyClient, dump_observation, unix_socket_url
from kinitro_dagster.protocol import ErrorKind, PolicyError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "policies"
TRIVIAL_TEMPLATE_POLICY = Path(__file__).resolve().parents[2] / "benchmarks" / "policies" / "trivial"
TASK_CONFIG = {"env_id": "metaworld/reach-v3", "env_name": "metaworld", "task_name": "reach-v3", "task_id": 0}
OBSERVATION = {
    "rgb": {},
    "depth": {},
    "proprio": {"ee_pos": [0.0, 0.6, 0.2], "ee_quat": [0.0, 0.0, 0.0, 1.0], "gripper": [0.0]},
    "cam_intrinsics": {},
    "cam_extrinsics": {},
    "extra": {},
}


@pytest.fixture(scope="module")
def servers(running_deployments) -> Iterator[dict[str, LocalDeployment]]:
    deployments = {
        "good": LocalDeployment(FIXTURES / "good"),
        "good_chunked": LocalDeployment(FIXTURES / "good", env={"FIXTURE_CHUNKED": "1"}),
        "http_500": LocalDeployment(FIXTURES / "http_500"),
        "template": LocalDeployment(TRIVIAL_TEMPLATE_POLICY),
    }
    with running_deployments(deployments) as servers:
        yield servers


def test_health_reset_and_act_round_trip(servers):
    deployment = servers["good"]
    with PolicyClient(deployment.base_url) as client:
        assert client.health()["status"] == "healthy"
        assert client.reset(TASK_CONFIG) == "fixture-episode"
        action = client.act(OBSERVATION)
    np.testing.assert_array_equal(action.ee_twist, np.zeros(6))
    assert action.ee_twist.shape == (6,)
    assert action.gripper == 0.0


def test_reset_sends_the_task_config_and_no_seed(servers):
    deployment = servers["good"]
    with PolicyClient(deployment.base_url) as client:
        client.reset(TASK_CONFIG)
        received = client.health()["last_reset"]
    assert received == {"task_config": TASK_CONFIG}
    assert "seed" not in received["task_config"]


def test_one_keep_alive_connection_serves_a_whole_episode(servers):
    deployment = servers["good"]
    with PolicyClient(deployment.base_url) as client:
        client.reset(TASK_CONFIG)
        local_address = client._sock.getsockname()
        for _ in range(50):
            client.act(OBSERVATION)
        assert client._sock.getsockname() == local_address


def test_chunked_responses_are_read(servers):
    deployment = servers["good_chunked"]
    with PolicyClient(deployment.base_url) as client:
        client.reset(TASK_CONFIG)
        for _ in range(3):
            assert client.act(OBSERVATION).gripper == 0.0


def test_pre_encoded_observation_bytes_are_sent_as_is(servers):
    deployment = servers["good"]
    with PolicyClient(deployment.base_url) as client:
        client.reset(TASK_CONFIG)
        assert client.act(b'{"proprio": {"ee_pos": [0, 0, 0]}}').gripper == 0.0


def test_connection_is_reopened_after_an_error(servers):
    deployment = servers["http_500"]
    with PolicyClient(deployment.base_url) as client:
        client.reset(TASK_CONFIG)
        with pytest.raises(PolicyError) as error:
            client.act(OBSERVATION)
        assert error.value.kind is ErrorKind.HTTP_ERROR
        assert client._sock is None  # dropped: whatever the server left unread cannot leak into the next reply
        assert client.reset(TASK_CONFIG) == "fixture-episode"


def test_idle_connection_closed_by_the_server_is_replaced_transparently(servers):
    deployment = servers["good"]
    with PolicyClient(deployment.base_url) as client:
        client.reset(TASK_CONFIG)
        # Simulate the server dropping an idle keep-alive connection: shut our socket's read side
        # down under the client, which then sees EOF on its reused connection.
        client._sock.shutdown(socket.SHUT_RDWR)
        assert client.act(OBSERVATION).gripper == 0.0


def test_template_shaped_fastapi_policy_is_served(servers):
    deployment = servers["template"]
    with PolicyClient(deployment.base_url) as client:
        health = client.health()
        assert health["status"] == "healthy" and health["model_loaded"] is True
        assert isinstance(client.reset(TASK_CONFIG), str)
        assert client.act(OBSERVATION).ee_twist.tolist() == [0.0] * 6


def test_unix_socket_urls_round_trip_their_path(tmp_path):
    path = tmp_path / "dir with space" / "policy.sock"
    url = unix_socket_url(path)
    assert url.startswith("http+unix://") and " " not in url
    assert PolicyClient(url)._address == str(path)


def test_refused_connection_is_a_connection_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe is closed
    with PolicyClient(f"http://127.0.0.1:{port}") as client, pytest.raises(PolicyError) as error:
        client.health()
    assert error.value.kind is ErrorKind.CONNECTION_ERROR


def test_https_urls_are_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="http://host:port"):
        PolicyClient("https://policy.example:443")


def test_observations_encode_as_the_stdlib_would_read_them():
    image = {"data": "bnVsbA==null+/AAAA", "shape": [2, 2, 3], "dtype": "uint8"}  # base64 may spell "null"
    observation = {**OBSERVATION, "rgb": {"corner": image}, "extra": {"state": [1e-5, -0.0, 1.5e300, 12]}}
    assert json.loads(dump_observation(observation)) == observation
    assert json.loads(dump_observation(OBSERVATION)) == OBSERVATION
    # A NumPy scalar (a float subclass orjson refuses) still encodes, through the stdlib.
    assert json.loads(dump_observation({"x": [np.float64(0.25)]})) == {"x": [0.25]}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_observation_is_an_evaluator_error_not_a_null(bad: float):
    with pytest.raises(PolicyError) as raised:
        dump_observation({**OBSERVATION, "extra": {"state": [0.0, bad]}})
    assert raised.value.kind is ErrorKind.EVALUATOR_ERROR
