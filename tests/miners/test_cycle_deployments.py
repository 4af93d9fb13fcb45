"""A cycle's policy containers, shared by the evaluators of one Docker host, on a real dockerd.

Each pool here stands for one run container's evaluator (a lease is an flock on a file, which
two pools in one process contend for exactly as two processes do); one test uses a real second
process and kills it. The `docker_image` fixture fails the session if any container that this
process started is left over, so every test retires what it made.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from kinitro_dagster.miners.cycle_deployments import (
    SCOPE_LABEL,
    CycleDeploymentPool,
    deployment_key,
    reap_idle_deployments,
    retire_scope,
)
from kinitro_dagster.miners.docker_deployment import DockerDeployment, DockerOptions
from kinitro_dagster.miners.docker_engine import docker_client
from kinitro_dagster.miners.host import LABEL
from kinitro_dagster.miners.policy_client import ClientSettings
from kinitro_dagster.sim.base import EnvConfig
from kinitro_dagster.sim.partition import PartitionSettings, PolicyUnderTest, evaluate_env_partition
from tests.miners.test_docker_deployment import MINERS, publish

SHORT = EnvConfig(max_steps=5, use_images=False)
ACT = ClientSettings(action_timeout=5.0)


@pytest.fixture
def scope() -> str:
    """A cycle of its own per test; whatever a test leaves of it is removed."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    for container in _containers(name):
        container.remove(force=True)


@pytest.fixture
def policy(tmp_path) -> PolicyUnderTest:
    return publish(MINERS / "random_policy", "alice/shared", tmp_path / "hub")


def _containers(scope: str) -> list:
    return docker_client().containers.list(all=True, filters={"label": [f"{LABEL}=1", f"{SCOPE_LABEL}={scope}"]})


def _ids(scope: str) -> set[str]:
    return {c.id for c in _containers(scope)}


def _play(env_id: str, policy: PolicyUnderTest, pool: CycleDeploymentPool, options: DockerOptions) -> None:
    settings = PartitionSettings(env=SHORT, docker=options, client=ACT)
    records = evaluate_env_partition(env_id, [policy], [11, 12], settings, docker_pool=pool)
    assert [(r.error_kind, r.steps) for r in records] == [(None, 5), (None, 5)], [r.error for r in records]


def test_what_a_deployment_is_shared_by(tmp_path):
    snapshot = MINERS / "random_policy"
    base = DockerDeployment(snapshot, options=DockerOptions(), repo="a/b", revision="1")

    def key(**changes) -> str:
        fields = {"repo": "a/b", "revision": "1", **changes}
        options = DockerOptions(**{k: v for k, v in fields.items() if k not in ("repo", "revision", "env")})
        return deployment_key(DockerDeployment(snapshot, options=options, repo=fields["repo"],
                                               revision=fields["revision"], env=fields.get("env")))  # fmt: skip

    assert key() == deployment_key(base)
    # The idle TTL and warm-up timeout do not change what runs; the snapshot, image and limits do.
    assert key(ttl_s=5, warmup_timeout=9) == deployment_key(base)
    others = [key(revision="2"), key(repo="a/c"), key(image="other:v1"), key(cpus=2.0), key(memory="8Gi"),
              key(gpu_count=1), key(env={"X": "1"})]  # fmt: skip
    assert len({*others, deployment_key(base)}) == len(others) + 1


@pytest.mark.docker
@pytest.mark.slow
def test_partitions_of_a_cycle_share_a_deployment_and_a_busy_one_gets_a_replica(docker_image, scope, policy):
    options = DockerOptions(image=docker_image, memory="1Gi", ttl_s=600)
    first, second = CycleDeploymentPool(scope), CycleDeploymentPool(scope)
    started = time.monotonic()
    _play("metaworld/reach-v3", policy, first, options)
    print(f"\nfirst env partition, deployment started: {time.monotonic() - started:.2f} s")
    deployed = _ids(scope)
    assert first.counts() == {"started": 1, "reused": 0} and len(deployed) == 1
    assert [c.status for c in _containers(scope)] == ["running"]  # it outlived the partition

    started = time.monotonic()
    _play("metaworld/push-v3", policy, second, options)  # another run container, another env
    print(f"second env partition, deployment taken over: {time.monotonic() - started:.2f} s")
    assert second.counts() == {"started": 0, "reused": 1} and _ids(scope) == deployed

    # While one partition holds it, another of the same cycle gets a replica, never the same server.
    holder = CycleDeploymentPool(scope)
    held = holder.acquire(policy.policy_dir, options, repo=policy.repo, revision=policy.revision)
    assert held.container_id in deployed and held.is_alive()
    _play("metaworld/reach-v3", policy, CycleDeploymentPool(scope), options)
    assert len(_ids(scope)) == 2
    holder.release([held])

    assert retire_scope(scope).removed == 2 and _ids(scope) == set()


@pytest.mark.docker
@pytest.mark.slow
def test_a_killed_evaluator_frees_its_deployment_for_the_retry(docker_image, scope, policy):
    """SIGKILL of the holder (a run container killed mid-partition): the next partition takes over."""
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from kinitro_dagster.miners.cycle_deployments import CycleDeploymentPool
        from kinitro_dagster.miners.docker_deployment import DockerOptions
        pool = CycleDeploymentPool({scope!r})
        d = pool.acquire(Path({str(policy.policy_dir)!r}), DockerOptions(image={docker_image!r}, memory="1Gi"),
                         repo={policy.repo!r}, revision={policy.revision!r})
        d.start()
        print(d.container_id, flush=True)
        time.sleep(600)
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        container_id = holder.stdout.readline().strip()
        assert container_id, "the holder did not start its deployment"
        options = DockerOptions(image=docker_image, memory="1Gi", ttl_s=600)
        blocked = CycleDeploymentPool(scope)
        replica = blocked.acquire(policy.policy_dir, options, repo=policy.repo, revision=policy.revision)
        assert not replica.is_alive()  # held: a new deployment, not the holder's
        blocked.release([replica])
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)

    retry = CycleDeploymentPool(scope)  # its start-up prune must not take a cycle's container for a leftover
    _play("metaworld/reach-v3", policy, retry, options)
    assert retry.counts() == {"started": 0, "reused": 1} and _ids(scope) == {container_id}
    assert retire_scope(scope).removed == 1


@pytest.mark.docker
@pytest.mark.slow
def test_idle_past_the_ttl_is_removed_a_leased_one_never(docker_image, scope, policy, tmp_path):
    options = DockerOptions(image=docker_image, memory="1Gi", ttl_s=8)
    _play("metaworld/reach-v3", policy, CycleDeploymentPool(scope), options)
    idle = _ids(scope)
    other = publish(MINERS / "random_policy", "bob/busy", tmp_path / "hub2")
    holder = CycleDeploymentPool(scope)
    busy = holder.acquire(other.policy_dir, options, repo=other.repo, revision=other.revision)
    busy.start()
    assert reap_idle_deployments(options.ttl_s) == 0  # both used within the TTL
    time.sleep(options.ttl_s + 0.5)
    assert reap_idle_deployments(options.ttl_s) == 1 and _ids(scope) == {busy.container_id} and busy.is_alive()
    assert idle.isdisjoint(_ids(scope))

    report = retire_scope(scope)  # scored while a straggler still plays: it keeps its deployment
    assert (report.removed, report.busy) == (0, 1) and busy.is_alive()
    holder.release([busy])
    assert retire_scope(scope).removed == 1 and _ids(scope) == set()


@pytest.mark.docker
@pytest.mark.slow
def test_failed_and_dead_deployments_are_never_handed_on(docker_image, scope, policy):
    options = DockerOptions(image=docker_image, memory="1Gi", ttl_s=600)
    pool = CycleDeploymentPool(scope)
    failed = pool.acquire(policy.policy_dir, options, repo=policy.repo, revision=policy.revision)
    failed.start()
    pool.release([failed], failed=True)  # its partition failed
    assert _ids(scope) == set() and not Path(failed.run_dir).exists()

    crashed = pool.acquire(policy.policy_dir, options, repo=policy.repo, revision=policy.revision)
    crashed.start()
    pool.release([crashed])
    docker_client().containers.get(crashed.container_id).kill()  # dies while idle
    again = CycleDeploymentPool(scope)
    _play("metaworld/reach-v3", policy, again, options)
    # The dead one was skipped, and removed by the new pool's look at the host.
    assert again.counts() == {"started": 1, "reused": 0} and crashed.container_id not in _ids(scope)
    assert retire_scope(scope).removed == 1
