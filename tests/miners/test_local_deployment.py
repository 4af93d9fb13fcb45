"""LocalDeployment: start, health, stop with the whole process group, clear warm-up errors, no leaks."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kinitro_dagster.miners.deployments import (
    Deployment,
    DeploymentError,
    LocalDeployment,
    process_is_alive,
    start_all,
)
from kinitro_dagster.miners.policy_client import PolicyClient
from kinitro_dagster.protocol import PolicyError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "policies"
REPO = Path(__file__).resolve().parents[2]


def wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process_is_alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_started_deployment_serves_and_stopping_frees_everything():
    deployment = LocalDeployment(FIXTURES / "good")
    assert isinstance(deployment, Deployment)
    with deployment:
        assert deployment.is_alive()
        assert deployment.base_url.startswith("http://127.0.0.1:")
        pid = deployment.pid
        with PolicyClient(deployment.base_url) as client:
            assert client.health()["status"] == "healthy"
    assert not deployment.is_alive()
    assert wait_gone(pid)
    with PolicyClient(deployment.base_url, connect_timeout_s=1) as client, pytest.raises(PolicyError):
        client.health()


def test_unix_socket_transport_serves_and_cleans_up_its_socket():
    deployment = LocalDeployment(FIXTURES / "good", transport="unix")
    with deployment:
        assert deployment.base_url.startswith("http+unix://")
        assert deployment.socket_path.is_socket()
        with PolicyClient(deployment.base_url) as client:
            assert client.health()["status"] == "healthy"
            assert client.act({"proprio": {}}).gripper == 0.0
        socket_dir = deployment.socket_path.parent
    assert not socket_dir.exists()


def test_stop_takes_the_servers_own_child_processes_too():
    with LocalDeployment(FIXTURES / "spawns_child") as deployment, PolicyClient(deployment.base_url) as client:
        helper_pid = int(client.health()["fixture_env"])
        assert process_is_alive(helper_pid)
    assert wait_gone(helper_pid), "the policy's helper process outlived the deployment"


def test_seed_secret_is_withheld_and_extra_env_is_passed(monkeypatch):
    monkeypatch.setenv("KINITRO_SEED_SECRET", "operator-only")
    deployment = LocalDeployment(FIXTURES / "good", env={"FIXTURE_ENV": "hello"})
    with deployment, PolicyClient(deployment.base_url) as client:
        health = client.health()
    assert health["seed_secret_visible"] is False
    assert health["fixture_env"] == "hello"


def test_server_that_fails_to_import_reports_its_log_tail():
    deployment = LocalDeployment(FIXTURES / "broken_import", warmup_timeout=30)
    with pytest.raises(DeploymentError) as error:
        deployment.start()
    message = str(error.value)
    assert "exited with code" in message
    assert "torch_that_is_not_installed" in message  # the miner's own error, from the server log
    assert not deployment.is_alive()


def test_server_that_never_gets_healthy_fails_after_the_warm_up_timeout_and_is_stopped():
    deployment = LocalDeployment(FIXTURES / "slow_start", warmup_timeout=1.5)
    started = time.monotonic()
    with pytest.raises(DeploymentError, match=r"did not answer GET /health within 1\.5 s"):
        deployment.start()
    assert time.monotonic() - started < 10
    assert not deployment.is_alive()


def test_directory_without_server_py_is_refused(tmp_path):
    with pytest.raises(DeploymentError, match=r"no server\.py"):
        LocalDeployment(tmp_path)


def test_start_all_starts_the_good_and_reports_the_broken():
    deployments = [LocalDeployment(FIXTURES / "good"), LocalDeployment(FIXTURES / "broken_import")]
    try:
        errors = start_all(deployments)
        assert errors[0] is None and deployments[0].is_alive()
        assert isinstance(errors[1], DeploymentError) and not deployments[1].is_alive()
    finally:
        for deployment in deployments:
            deployment.stop()


def test_a_deployment_dropped_without_stop_does_not_leak_its_server():
    deployment = LocalDeployment(FIXTURES / "good")
    deployment.start()
    pid = deployment.pid
    del deployment
    gc.collect()
    assert wait_gone(pid)


def test_an_exception_inside_the_with_block_still_stops_the_server():
    with pytest.raises(RuntimeError, match="test failed here"), LocalDeployment(FIXTURES / "good") as deployment:
        pid = deployment.pid
        raise RuntimeError("test failed here")
    assert wait_gone(pid)


def test_servers_still_running_at_interpreter_exit_are_stopped():
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from kinitro_dagster.miners.deployments import LocalDeployment
        deployment = LocalDeployment(Path({str(FIXTURES / "good")!r}))
        deployment.start()
        print(deployment.pid, flush=True)
        # no stop(): the interpreter exits with the server running
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60, env=os.environ
    )
    assert result.returncode == 0, result.stderr
    assert wait_gone(int(result.stdout.split()[-1]))
