"""Docker mode on a real dockerd: sandboxed policy containers, the deployment cache, hostile policies.

The `docker`-marked tests need root, dockerd and the images; the session fixture makes them
(`sim_images/setup-docker.sh`: installs docker.io, starts dockerd, builds the base and
miner-runner images) and FAILS if it cannot: CI runs these, so a silent skip would hide a broken
setup. Deselect with -m "not docker". The unmarked tests at the top need no docker.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kinitro_dagster.miners.deployment_pool import DeploymentPool
from kinitro_dagster.miners.deployments import Deployment, DeploymentError, process_is_alive
from kinitro_dagster.miners.docker_deployment import (
    POLICY_UID,
    DockerDeployment,
    DockerOptions,
    policy_mount,
)
from kinitro_dagster.miners.docker_engine import DockerSetupError, docker_client
from kinitro_dagster.miners.host import default_run_root
from kinitro_dagster.miners.hub import fetch_snapshot, hub_identity, publish_to_cache
from kinitro_dagster.miners.policy_client import ClientSettings, PolicyClient
from kinitro_dagster.protocol import PolicyError
from kinitro_dagster.sim.base import EnvConfig
from kinitro_dagster.sim.partition import PartitionSettings, PolicyUnderTest, evaluate_env_partition
from kinitro_dagster.sizes import parse_memory
from tests.miners.conftest import our_containers as _our_containers

REPO = Path(__file__).resolve().parents[2]
MINERS = REPO / "examples" / "miners"
HOSTILE = REPO / "tests" / "fixtures" / "policies" / "hostile"
IMAGE = os.environ.get("KINITRO_EXECUTOR_MINER_DEPLOYMENT_IMAGE", "kinitro/miner-runner:v1")
ENV_ID = "metaworld/reach-v3"
SHORT = EnvConfig(max_steps=20, use_images=False)


# -- no docker needed --------------------------------------------------------------------------


def test_memory_sizes_read_as_docker_reads_them():
    assert parse_memory("4Gi") == parse_memory("4g") == parse_memory("4GB") == 4 * 2**30
    assert parse_memory("512Mi") == parse_memory("512m") == 512 * 2**20
    assert parse_memory("1048576") == 2**20
    with pytest.raises(ValueError, match="not a size"):
        parse_memory("lots")


def test_hub_snapshot_mounts_its_cache_folder_so_links_resolve(tmp_path):
    cache = tmp_path / "hub"
    revision = publish_to_cache(MINERS / "random_policy", "alice/policy", cache_dir=cache)
    snapshot = fetch_snapshot("alice/policy", revision, cache_dir=cache).path
    source, inside = policy_mount(snapshot)
    assert source == (cache / "models--alice--policy").resolve()
    assert inside == f"/policy/snapshots/{revision}"
    assert hub_identity(snapshot) == ("alice/policy", revision)
    assert hub_identity(MINERS / "random_policy") == (None, None)
    assert policy_mount(MINERS / "random_policy") == (MINERS / "random_policy", "/policy")


def test_snapshot_linking_outside_its_folder_is_refused(tmp_path):
    policy = tmp_path / "policy"
    shutil.copytree(MINERS / "random_policy", policy)
    (tmp_path / "secret").write_text("host file")
    (policy / "weights.bin").symlink_to("../secret")
    with pytest.raises(DeploymentError, match="outside"):
        policy_mount(policy)


# -- fixtures ----------------------------------------------------------------------------------


class RecordingPool(DeploymentPool):
    """A deployment cache that remembers what it handed out and each container's last state."""

    def __init__(self) -> None:
        super().__init__(prune=False)
        self.seen: list[DockerDeployment] = []
        self.final_state: dict[str, dict] = {}

    def acquire(self, *args, **kwargs) -> DockerDeployment:
        deployment = super().acquire(*args, **kwargs)
        self.seen.append(deployment)
        return deployment

    def release(self, deployments, *, failed: bool = False) -> None:
        deployments = list(deployments)
        for deployment in deployments:
            self.final_state[deployment.repo] = deployment.state()
        super().release(deployments, failed=failed)


def publish(source: Path, repo: str, cache: Path, extra_files: dict[str, str] | None = None) -> PolicyUnderTest:
    """A snapshot of `source` (plus `extra_files`) in a hub cache, fetched as the evaluator would."""
    if extra_files:
        staged = cache.parent / "staged" / repo.replace("/", "--")
        shutil.copytree(source, staged, ignore=shutil.ignore_patterns("__pycache__"))
        for name, text in extra_files.items():
            (staged / name).write_text(text)
        source = staged
    snapshot = fetch_snapshot(repo, publish_to_cache(source, repo, cache_dir=cache), cache_dir=cache)
    return PolicyUnderTest(uid=0, policy_dir=snapshot.path, repo=snapshot.repo, revision=snapshot.revision)


def host_ip() -> str:
    """This host's address on its main interface (a container with a network could reach it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("1.1.1.1", 53))  # no packet is sent: this only picks a route
            return probe.getsockname()[0]
        except OSError:
            return socket.gethostbyname(socket.gethostname())


@pytest.fixture
def host_listener() -> Iterator[tuple[int, list]]:
    """A TCP service on every host interface; records who connected."""
    server = socket.create_server(("0.0.0.0", 0))
    server.settimeout(0.2)
    connections: list = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, peer = server.accept()
            except TimeoutError:
                continue
            connections.append(peer)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], connections
    stop.set()
    thread.join()
    server.close()


def probe_targets(port: int, sentinel: Path, other_snapshot: Path) -> dict:
    ip = host_ip()
    return {
        "tcp": [["1.1.1.1", 443], ["8.8.8.8", 53], ["127.0.0.1", 5432], [ip, 5432], ["172.17.0.1", 5432],
                [ip, port], ["172.17.0.1", port], ["127.0.0.1", port]],
        "dns": ["pypi.org", "huggingface.co"],
        "read": ["/etc/shadow", str(sentinel), str(other_snapshot / "policy.py"), "/var/run/docker.sock",
                 str(REPO / "pyproject.toml"), "/root/.bash_history"],
        "write": ["/policy/pwned", "/etc/pwned", "/usr/pwned", "/pwned", str(sentinel)],
    }  # fmt: skip


def uid_processes(uid: int) -> list[int]:
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            line = next(x for x in status.read_text().splitlines() if x.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if int(line.split()[1]) == uid:
            pids.append(int(status.parent.name))
    return pids


# -- a policy in the sandbox -------------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.slow
def test_hub_snapshot_plays_an_episode_in_docker_mode_and_is_torn_down(docker_image, tmp_path):
    from kinitro_dagster.defs.resources import CycleConfig, Evaluator, cycle_configuration

    policy = publish(MINERS / "random_policy", "alice/random", tmp_path / "hub")
    evaluator = Evaluator(eval_mode="docker", miner_deployment_image=docker_image, miner_deployment_ttl_seconds=0,
                          miner_deployment_memory="1Gi",
                          max_timesteps=20, use_images=False, max_workers=1)  # fmt: skip
    cycle = cycle_configuration([ENV_ID], CycleConfig(), evaluator)  # what a cycle opened now records
    records = evaluator.evaluate(ENV_ID, [policy], seeds=[11], cycle=cycle)
    assert [(r.uid, r.steps, r.error_kind) for r in records] == [(0, 20, None)]
    assert _our_containers() == []  # ttl 0: torn down at the end of the partition


@pytest.mark.docker
@pytest.mark.slow
def test_container_runs_sandboxed_and_stop_removes_it(docker_image, tmp_path):
    import docker

    policy = publish(MINERS / "random_policy", "alice/random", tmp_path / "hub")
    options = DockerOptions(image=docker_image, cpus=0.5, memory="768Mi", pids_limit=64, ttl_s=0)
    deployment = DockerDeployment(policy.policy_dir, options=options)
    assert isinstance(deployment, Deployment)
    with deployment:
        assert (deployment.repo, deployment.revision) == ("alice/random", policy.revision)
        assert deployment.base_url.startswith("http+unix://")
        assert deployment.pid is not None and process_is_alive(deployment.pid)
        with PolicyClient(deployment.base_url) as client:
            assert client.health()["status"] == "healthy"
        info = docker.from_env().containers.get(deployment.container_id).attrs
        host = info["HostConfig"]
        assert host["NetworkMode"] == "none"
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
        assert host["Memory"] == host["MemorySwap"] == 768 * 2**20
        assert host["NanoCpus"] == 5 * 10**8 and host["PidsLimit"] == 64
        assert info["Config"]["User"] == f"{POLICY_UID}:{POLICY_UID}"
        assert info["Config"]["Labels"]["kinitro.revision"] == policy.revision
        mounts = {m["Destination"]: m for m in info["Mounts"]}
        assert mounts["/policy"]["RW"] is False
        container_id, run_dir, pid = deployment.container_id, deployment.socket_path.parent.parent, deployment.pid
    assert not deployment.is_alive()
    with pytest.raises(docker.errors.NotFound):
        docker.from_env().containers.get(container_id)
    assert not run_dir.exists()
    assert not process_is_alive(pid)


@pytest.mark.docker
@pytest.mark.slow
def test_missing_image_fails_the_partition_with_a_build_hint(docker_image, tmp_path):
    policy = publish(MINERS / "random_policy", "alice/random", tmp_path / "hub")
    with pytest.raises(DockerSetupError, match="kinitro env build miner"):
        evaluate_env_partition(ENV_ID, [policy], [1], PartitionSettings(
            env=SHORT, docker=DockerOptions(image="kinitro/no-such-image:0")), docker_pool=RecordingPool())  # fmt: skip


@pytest.mark.docker
@pytest.mark.slow
def test_policy_that_cannot_start_read_only_fails_warm_up_with_its_log(docker_image, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "server.py").write_text("open('/policy/cache.bin', 'w')  # downloads weights at import\n")
    deployment = DockerDeployment(broken, options=DockerOptions(image=docker_image, warmup_timeout=60))
    with pytest.raises(DeploymentError, match=r"(?s)exited with code.*Read-only file system"):
        deployment.start()
    assert deployment.container_id[:12] not in _our_containers()


# -- hostile policies --------------------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.slow
def test_probes_from_inside_reach_no_network_host_service_or_host_file(docker_image, tmp_path, host_listener):
    port, connections = host_listener
    sentinel = tmp_path / "host-secret.txt"
    sentinel.write_text("only the host may read this")
    other = publish(MINERS / "random_policy", "bob/other", tmp_path / "hub")
    targets = probe_targets(port, sentinel, other.policy_dir)
    files = {"MODE": "probe", "targets.json": json.dumps(targets)}
    hostile = publish(HOSTILE, "mallory/probe", tmp_path / "hub", files)

    options = DockerOptions(image=docker_image)
    with (
        DockerDeployment(hostile.policy_dir, options=options) as deployment,
        PolicyClient(deployment.base_url, action_timeout=60) as client,
    ):
        with pytest.raises(PolicyError, match="HTTP 500"):  # the hostile policy fails its own episode
            client.act({})
        results = client.health()["probes"]
    escaped = {name: outcome for name, outcome in results.items() if not outcome.startswith("blocked")}
    assert escaped == {}, f"escaped the sandbox: {escaped}"
    assert len(results) == sum(map(len, targets.values())) + 2  # + setuid and capabilities
    assert connections == [] and sentinel.read_text() == "only the host may read this"

    # Control: the same probes in a container that does have a network reach the host's service,
    # so a sandbox that leaked would have been caught above.
    import docker

    output = docker.from_env().containers.run(
        docker_image, ["python", "/probe/probes.py"], network_mode="bridge", remove=True, user=f"{POLICY_UID}",
        volumes={str(tmp_path / "staged" / "mallory--probe"): {"bind": "/probe", "mode": "ro"}},
    )  # fmt: skip
    control = json.loads(output)
    assert control[f"tcp 172.17.0.1:{port}"].startswith("escaped"), control
    assert connections, "the control container's connection never reached the host listener"


HOSTILE_MODES = ("probe", "memory", "fork", "disk")


@pytest.mark.docker
@pytest.mark.slow
def test_hostile_policies_fail_their_own_episodes_and_harm_nothing_else(docker_image, tmp_path, host_listener):
    port, connections = host_listener
    sentinel = tmp_path / "host-secret.txt"
    sentinel.write_text("only the host may read this")
    cache = tmp_path / "hub"
    good = publish(MINERS / "random_policy", "alice/good", cache)
    targets = json.dumps(probe_targets(port, sentinel, good.policy_dir))
    policies = [PolicyUnderTest(1, good.policy_dir, good.repo, good.revision)]
    for uid, mode in enumerate(HOSTILE_MODES, start=2):
        hostile = publish(HOSTILE, f"mallory/{mode}", cache, {"MODE": mode, "targets.json": targets})
        policies.append(PolicyUnderTest(uid, hostile.policy_dir, hostile.repo, hostile.revision))
    shm_before = set(default_run_root().glob("kinitro-policy-*"))
    pool = RecordingPool()
    options = DockerOptions(image=docker_image, cpus=0.5, memory="512Mi", pids_limit=64, ttl_s=0)

    records = evaluate_env_partition(ENV_ID, policies, [1, 2], PartitionSettings(
        env=SHORT, docker=options, client=ClientSettings(action_timeout=5.0)), docker_pool=pool)  # fmt: skip

    by_uid = {uid: [r for r in records if r.uid == uid] for uid in range(1, 2 + len(HOSTILE_MODES))}
    assert [(r.steps, r.error_kind) for r in by_uid[1]] == [(20, None), (20, None)], by_uid[1]
    for uid, mode in enumerate(HOSTILE_MODES, start=2):
        assert len(by_uid[uid]) == 2 and all(r.error_kind and not r.success for r in by_uid[uid]), (mode, by_uid[uid])
    errors = {mode: by_uid[uid][0].error for uid, mode in enumerate(HOSTILE_MODES, start=2)}
    assert '"escaped": []' in errors["probe"], errors["probe"]
    fork = json.loads(errors["fork"].partition("HTTP 500: ")[2].strip("'"))
    assert fork["refused"] == "BlockingIOError" and fork["forks"] < 64, fork
    assert pool.final_state["mallory/memory"]["OOMKilled"] is True  # killed at 512 MiB, nothing else
    disk = json.loads(errors["disk"].partition("HTTP 500: ")[2].strip("'"))
    assert "256 MiB then OSError" in disk["tmp"], disk  # /tmp is a 256 MiB tmpfs (and counts as its memory)
    assert disk["socket_dir"].endswith("PermissionError"), disk  # sealed once the policy was serving
    assert {r.error_kind for r in by_uid[3]} == {"crashed"}

    # Nothing outlives the partition (ttl 0) or leaked onto the host.
    assert _our_containers() == []
    assert uid_processes(POLICY_UID) == []
    assert set(default_run_root().glob("kinitro-policy-*")) <= shm_before
    assert all(not d.socket_path.parent.parent.exists() for d in pool.seen)
    assert connections == [] and sentinel.read_text() == "only the host may read this"
    assert socket.create_connection(("127.0.0.1", 5432), timeout=5)  # the host's PostgreSQL is fine


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.mark.docker
@pytest.mark.slow
def test_log_flood_costs_the_policy_its_memory_and_the_host_nothing(docker_image, tmp_path):
    dockerd = int(subprocess.run(["pgrep", "-o", "-x", "dockerd"], capture_output=True, text=True).stdout.split()[0])
    hostile = publish(HOSTILE, "mallory/logs", tmp_path / "hub", {"MODE": "logs"})
    options = DockerOptions(image=docker_image, cpus=0.5, memory="1Gi")
    with DockerDeployment(hostile.policy_dir, options=options) as deployment:
        run_dir = deployment.socket_path.parent.parent
        before, started = cpu_seconds(dockerd), time.monotonic()
        with PolicyClient(deployment.base_url) as client, pytest.raises(PolicyError, match="HTTP 500"):
            client.act({})
        deadline = time.monotonic() + 60
        while deployment.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        flood_s = time.monotonic() - started
        # Its log file counts against its own memory: the kernel either OOM-kills it, or (cgroup v1,
        # seen here) keeps it thrashing at its limit with the log as big as the limit allows. Either
        # way the flood is the policy's loss alone.
        if not deployment.state()["OOMKilled"]:
            log_file = deployment.socket_path.parent / "server.log"
            usage = docker_client().containers.get(deployment.container_id).stats(stream=False)["memory_stats"]["usage"]
            limit = parse_memory(options.memory)
            assert usage >= 0.95 * limit and log_file.stat().st_size >= 0.9 * limit, (usage, log_file.stat().st_size)
        spent = cpu_seconds(dockerd) - before
    # Through docker's json-file log driver the same flood cost dockerd ~45 % of a core.
    assert spent < 0.2 + 0.1 * flood_s, f"dockerd spent {spent:.2f} s of CPU in {flood_s:.1f} s of a policy's output"
    assert "x" * 100 in deployment.last_log  # the log's tail is still there for error messages
    assert not run_dir.exists()


# -- the deployment cache ----------------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.slow
def test_cache_reuses_a_running_deployment_and_replaces_a_crashed_one(docker_image, tmp_path):
    cache = tmp_path / "hub"
    good = publish(MINERS / "random_policy", "alice/good", cache)
    memory = publish(HOSTILE, "mallory/memory", cache, {"MODE": "memory"})
    policies = [PolicyUnderTest(1, good.policy_dir, good.repo, good.revision),
                PolicyUnderTest(2, memory.policy_dir, memory.repo, memory.revision)]  # fmt: skip
    pool = RecordingPool()
    options = DockerOptions(image=docker_image, memory="512Mi", ttl_s=600)
    config = EnvConfig(max_steps=5, use_images=False)
    try:
        for _ in range(2):
            records = evaluate_env_partition(ENV_ID, policies, [1], PartitionSettings(
                env=config, docker=options, client=ClientSettings(action_timeout=5.0)), docker_pool=pool)  # fmt: skip
            assert [r.error_kind for r in records] == [None, "crashed"]
        good_deployments = [d for d in pool.seen if d.repo == "alice/good"]
        memory_deployments = [d for d in pool.seen if d.repo == "mallory/memory"]
        assert good_deployments[0] is good_deployments[1] and good_deployments[0].is_alive()  # reused
        assert memory_deployments[0] is not memory_deployments[1]  # crashed: torn down, deployed anew
        assert pool.cached() == 1 and len(_our_containers()) == 1
    finally:
        pool.close()
    assert _our_containers() == []


@pytest.mark.docker
@pytest.mark.slow
def test_containers_of_a_killed_evaluator_are_removed_by_the_next_one(docker_image, tmp_path):
    script = textwrap.dedent(f"""
        import os, sys
        from kinitro_dagster.miners.docker_deployment import DockerDeployment, DockerOptions
        d = DockerDeployment({str(MINERS / "random_policy")!r}, options=DockerOptions(image={docker_image!r}))
        d.start()
        print(d.container_id, flush=True)
        os._exit(0)  # as SIGKILL would: no atexit, no finalizers
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    container_id = out.stdout.split()[-1]
    import docker

    client = docker.from_env()
    assert client.containers.get(container_id).status == "running"  # left behind
    DeploymentPool(prune=True)._prepare(docker_image)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(container_id)


@pytest.mark.docker
@pytest.mark.slow
def test_containers_of_a_gone_run_container_are_removed_and_of_a_running_one_kept(docker_image, monkeypatch):
    """An evaluator in a run container labels its policy containers with that container; once the
    run container is gone (killed, auto-removed), the next evaluator's pool removes them."""
    import docker

    from kinitro_dagster.miners import host

    client = docker.from_env()
    # Stand-ins for two run containers: one still running, one killed and removed.
    running = client.containers.run(docker_image, ["sleep", "300"], detach=True, network_mode="none",
                                    labels={"kinitro.test": "run-container"})  # fmt: skip
    gone = client.containers.create(docker_image, ["true"], network_mode="none")
    gone.remove()
    launched = {}
    try:
        for owner in (running.id, gone.id):
            monkeypatch.setattr(host, "_own_container", owner)
            deployment = DockerDeployment(MINERS / "random_policy", options=DockerOptions(image=docker_image))
            deployment.launch()
            launched[owner] = deployment
            assert client.containers.get(deployment.container_id).labels["kinitro.owner_container"] == owner
        launched[gone.id]._finalizer.detach()  # as if its evaluator had been SIGKILLed with its container
        monkeypatch.setattr(host, "_own_container", "")  # the next evaluator, on the host

        assert host.prune_leftovers() >= 1
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(launched[gone.id].container_id)
        assert not launched[gone.id].socket_path.parent.parent.exists()  # its socket directory too
        assert client.containers.get(launched[running.id].container_id).status in ("created", "running")
    finally:
        if running.id in launched:
            launched[running.id].stop()
        running.remove(force=True)


# -- GPUs ----------------------------------------------------------------------------------------


def _fake_nvidia_smi(directory: Path, memory_mib: list[int]) -> Path:
    """An `nvidia-smi` that answers the memory query like the real one, for a host without GPUs."""
    script = directory / "nvidia-smi"
    script.write_text("#!/bin/sh\n" + "".join(f"echo {m}\n" for m in memory_mib))
    script.chmod(0o755)
    return directory


def test_gpu_count_becomes_the_device_request_docker_sends_for_gpus() -> None:
    from kinitro_dagster.miners.docker_deployment import sandbox_kwargs

    requests = sandbox_kwargs(DockerOptions(gpu_count=2))["device_requests"]
    # `docker run --gpus 2` sends exactly this; the engine hands it to the NVIDIA runtime.
    assert [dict(r) for r in requests] == [{"Driver": "", "Count": 2, "DeviceIDs": [], "Capabilities": [["gpu"]],
                                            "Options": {}}]
    assert sandbox_kwargs(DockerOptions())["device_requests"] == []


def test_a_host_without_enough_gpus_refuses_naming_the_setting(tmp_path, monkeypatch) -> None:
    from kinitro_dagster.miners.docker_deployment import require_gpus

    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi at all, as on these machines
    with pytest.raises(DeploymentError, match=r"KINITRO_EXECUTOR_MINER_DEPLOYMENT_GPU_COUNT=1, but this host has "
                                              r"no NVIDIA GPU"):
        require_gpus(1, None)
    require_gpus(0, None)  # no GPU asked for: nothing to check
    monkeypatch.setenv("PATH", str(_fake_nvidia_smi(tmp_path, [81920, 24576])))
    require_gpus(2, None)
    require_gpus(1, 40)
    with pytest.raises(DeploymentError, match=r"GPU_COUNT=2 with _MIN_GPU_MEMORY_GB=40, but this host has "
                                              r"2 NVIDIA GPU\(s\), 1 with enough memory"):
        require_gpus(2, 40)


@pytest.mark.docker
def test_a_gpu_deployment_on_this_engine_fails_its_miner_with_the_reason(docker_image, tmp_path, monkeypatch):
    policy = publish(MINERS / "random_policy", "alice/random", tmp_path / "hub")
    # No GPU here: the deployment refuses before any container exists.
    monkeypatch.setenv("PATH", f"{tmp_path / 'empty'}:/usr/bin:/bin")
    with pytest.raises(DeploymentError, match="no NVIDIA GPU"):
        DockerDeployment(policy.policy_dir, options=DockerOptions(image=docker_image, gpu_count=1)).launch()
    # A host that claims a GPU but whose engine has no NVIDIA runtime: dockerd itself rejects the
    # device request, and the miner's deployment fails with what to do.
    monkeypatch.setenv("PATH", f"{_fake_nvidia_smi(tmp_path, [16384])}:/usr/bin:/bin")
    with pytest.raises(DeploymentError, match=r"GPU_COUNT=1\): this Docker engine has no NVIDIA runtime"):
        DockerDeployment(policy.policy_dir, options=DockerOptions(image=docker_image, gpu_count=1)).launch()
    assert _our_containers() == []
