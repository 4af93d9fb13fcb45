"""Miner runtimes, for real against PyPI: a policy's own requirement is installed (wheels only) into a
shared runtime that its server runs in; the same declarations reuse it in well under a second; an
sdist-only, a missing and an oversized requirement each fail only their own miner, with the reason.

Times are printed (`pytest -s` shows them): build, reuse, size.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kinitro_dagster.miners.deployments import DeploymentError, LocalDeployment
from kinitro_dagster.miners.disk import DiskFull
from kinitro_dagster.miners.policy_client import PolicyClient
from kinitro_dagster.miners.runtime_store import stored_runtimes
from kinitro_dagster.miners.runtimes import (
    PYPI_SIMPLE,
    RuntimeBuildError,
    RuntimeSettings,
    declared_requirements,
    ensure_venv_runtime,
)
from kinitro_dagster.sim.base import EnvConfig
from kinitro_dagster.sim.partition import PartitionSettings, PolicyUnderTest, evaluate_env_partition

os.environ.setdefault("MUJOCO_GL", "egl")

REPO = Path(__file__).resolve().parents[2]
RANDOM_POLICY = REPO / "examples" / "miners" / "random_policy"
OWN_PACKAGE = "cowsay"  # a small pure-Python wheel that this project's venv does not have
SDIST_ONLY = "pycrypto==2.6.1"  # on PyPI as an sdist only: `uv pip compile --only-binary :all:` refuses it
MISSING = "nonexistent-pkg-xyz"


def make_policy(parent: Path, name: str, requirements: str | None, *, imports: str | None = None) -> Path:
    """A copy of the random policy with `requirements` as its requirements.txt (None: none), importing `imports`."""
    policy = parent / name
    shutil.copytree(RANDOM_POLICY, policy)
    (policy / "requirements.txt").unlink()
    if requirements is not None:
        (policy / "requirements.txt").write_text(requirements)
    if imports:
        anchor = "\nimport numpy as np\n"
        source = (policy / "policy.py").read_text().replace(anchor, f"{anchor}import {imports}\n")
        (policy / "policy.py").write_text(source)
    return policy


@pytest.fixture(scope="module")
def runtimes_root(tmp_path_factory) -> Path:
    """One state dir for the module: its uv cache downloads the base wheels once."""
    return tmp_path_factory.mktemp("state") / "runtimes"


@pytest.fixture
def settings(runtimes_root) -> RuntimeSettings:
    return RuntimeSettings(root=runtimes_root, build_timeout_s=300)


@pytest.fixture(scope="module")
def own_runtime(runtimes_root, tmp_path_factory):
    """A policy that imports cowsay, declared in its requirements.txt, and its freshly built runtime."""
    policy = make_policy(tmp_path_factory.mktemp("p"), "cowsay_policy", f"{OWN_PACKAGE}==6.1\n", imports=OWN_PACKAGE)
    started = time.monotonic()
    runtime = ensure_venv_runtime(policy, RuntimeSettings(root=runtimes_root, build_timeout_s=300))
    elapsed = time.monotonic() - started
    assert runtime is not None and runtime.built
    print(f"\nruntime {runtime.id[:16]}: built in {elapsed:.2f} s, {runtime.size_bytes / 2**20:.1f} MiB, "
          f"{len(runtime.pins)} packages")  # fmt: skip
    return policy, runtime


# -- a policy's own requirement, in its own runtime ------------------------------------------


def test_policy_with_its_own_requirement_serves_from_its_runtime(own_runtime):
    policy, runtime = own_runtime
    assert f"{OWN_PACKAGE}==6.1" in runtime.pins and "fastapi==0.165.0" in runtime.pins  # base set + its own
    assert Path(runtime.location).parent.name == "runtimes" and Path(runtime.location).name == runtime.id
    assert subprocess.run([runtime.python, "-c", f"import {OWN_PACKAGE}"], check=False).returncode == 0
    assert importlib.util.find_spec(OWN_PACKAGE) is None, "the package must not be in this project's venv"

    with LocalDeployment(policy, python=runtime.python) as server:
        with PolicyClient(server.base_url) as client:
            assert client.health()["status"] == "healthy"
        command = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
        assert command[0].decode() == runtime.python

    with pytest.raises(DeploymentError, match=f"No module named '{OWN_PACKAGE}'"):
        LocalDeployment(policy, warmup_timeout=30).start()  # this venv: the import fails


def test_same_requirements_reuse_the_runtime_in_under_a_second(own_runtime, settings, tmp_path):
    _, first = own_runtime
    # Another miner: same declaration, written differently (comment, case, spacing).
    other = make_policy(tmp_path, "same_set", "# what I need\nCowSay == 6.1\n", imports=OWN_PACKAGE)
    started = time.monotonic()
    runtime = ensure_venv_runtime(other, settings)
    elapsed = time.monotonic() - started
    print(f"\nruntime {runtime.id[:16]}: reused in {elapsed * 1e3:.1f} ms")
    assert (runtime.id, runtime.location, runtime.built) == (first.id, first.location, False)
    assert elapsed < 1.0


def test_env_test_serves_the_policy_from_its_runtime(own_runtime, runtimes_root, monkeypatch):
    """`kinitro env test` runs a policy as local eval mode does: in the runtime it declares."""
    from click.testing import CliRunner

    from kinitro_dagster.cli import main

    policy, runtime = own_runtime
    monkeypatch.setenv("KINITRO_STATE_DIR", str(runtimes_root.parent))
    args = ["env", "test", "metaworld/reach-v3", "--policy", str(policy), "--max-steps", "3", "--no-images"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"runtime: {runtime.location} (reused" in result.output
    assert "0/1 episodes succeeded" in result.output
    without = CliRunner().invoke(main, [*args, "--no-runtime"])  # this venv has no cowsay
    assert without.exit_code == 1 and f"No module named '{OWN_PACKAGE}'" in without.output, without.output


def test_concurrent_builders_of_one_runtime_build_it_once(settings, tmp_path):
    policies = [make_policy(tmp_path, f"p{i}", f"{OWN_PACKAGE}==6.0\n") for i in range(2)]
    results: list = [None, None]

    def build(i: int) -> None:
        results[i] = ensure_venv_runtime(policies[i], settings)

    threads = [threading.Thread(target=build, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results[0].id == results[1].id
    assert sorted([results[0].built, results[1].built]) == [False, True]
    assert not list(settings.root.glob(".build-*"))


def test_no_declarations_or_only_what_the_base_runtime_has_need_no_runtime(settings, tmp_path):
    assert ensure_venv_runtime(make_policy(tmp_path, "none", None), settings) is None
    assert ensure_venv_runtime(make_policy(tmp_path, "empty", "# nothing\n\n"), settings) is None
    # The example miners declare fastapi, numpy, metaworld...: all in this venv already, no uv run.
    for example in ("random_policy", "scripted_expert"):
        assert declared_requirements(REPO / "examples" / "miners" / example)
        assert ensure_venv_runtime(REPO / "examples" / "miners" / example, settings) is None


def test_pyproject_dependencies_are_declarations_and_options_urls_paths_are_refused(tmp_path):
    policy = make_policy(tmp_path, "pyproject", "cowsay==6.1  # pinned\n")
    (policy / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["babel>=2", "cowsay==6.1"]\n')
    assert declared_requirements(policy) == ["cowsay==6.1", "babel>=2"]
    for line, reason in [
        ("--extra-index-url https://evil.example/simple", "is an option"),
        ("-e .", "is an option"),
        ("cowsay @ https://evil.example/cowsay.whl", "names a URL"),
        ("./vendored/cowsay", "URLs and paths are not allowed"),
    ]:
        (policy / "requirements.txt").write_text(f"numpy\n{line}\n")
        with pytest.raises(RuntimeBuildError, match=f"requirements.txt line 2 .*{reason}"):
            declared_requirements(policy)


# -- what fails, and why -----------------------------------------------------------------------


@pytest.mark.parametrize(("requirement", "reason"), [
    (SDIST_ONLY, f"requirement '{SDIST_ONLY}' has no wheel for Python 3.12 on linux x86_64 (sdists are not built)"),
    (MISSING, f"requirement '{MISSING}' not found on {PYPI_SIMPLE}"),
    ("numpy<2", "requirement 'numpy<2' conflicts with the runtime's base set (numpy=="),
])  # fmt: skip
def test_unbuildable_requirement_is_named(settings, tmp_path, requirement, reason):
    policy = make_policy(tmp_path, "bad", f"{OWN_PACKAGE}==6.1\n{requirement}\n")
    with pytest.raises(RuntimeBuildError) as error:
        ensure_venv_runtime(policy, settings)
    assert error.value.reason.startswith(reason), error.value.reason
    assert "\n" not in error.value.reason


def test_runtime_over_the_size_limit_is_deleted(settings, tmp_path):
    small = RuntimeSettings(root=settings.root, max_size="1Mi", build_timeout_s=300)
    policy = make_policy(tmp_path, "big", "cowsay==6.1\nbabel==2.16.0\n")
    with pytest.raises(RuntimeBuildError, match=r"^runtime is \d+ MiB, over the 1 MiB limit "
                                                r"\(KINITRO_EXECUTOR_MINER_RUNTIME_MAX_SIZE\)$"):  # fmt: skip
        ensure_venv_runtime(policy, small)
    assert not list(settings.root.glob(".build-*"))
    for entry in (settings.root / "index").glob("*.json"):
        assert "babel" not in entry.read_text(), "a failed runtime must not be indexed"


def test_build_over_the_time_limit_fails_with_the_limit(settings, tmp_path):
    hurried = RuntimeSettings(root=settings.root, build_timeout_s=0.05)
    policy = make_policy(tmp_path, "slow", "babel==2.16.0\n")
    with pytest.raises(RuntimeBuildError, match=r"^timed out after 0.05 s .*MINER_RUNTIME_BUILD_TIMEOUT"):
        ensure_venv_runtime(policy, hurried)


def test_unbuildable_runtimes_fail_only_their_own_miner(own_runtime, runtimes_root, tmp_path):
    """One partition: the cowsay miner plays; sdist-only, missing and oversized miners fail alone."""
    good, runtime = own_runtime
    limit_mib = runtime.size_bytes // 2**20 + 8  # the good runtime fits, babel's ~30 MiB more does not
    policies = [
        PolicyUnderTest(1, good),
        PolicyUnderTest(2, make_policy(tmp_path, "sdist", f"{SDIST_ONLY}\n")),
        PolicyUnderTest(3, make_policy(tmp_path, "missing", f"{MISSING}\n")),
        PolicyUnderTest(4, make_policy(tmp_path, "too_big", f"{OWN_PACKAGE}==6.1\nbabel==2.16.0\n")),
        PolicyUnderTest(5, RANDOM_POLICY),  # declares only what the base runtime has
    ]
    started = time.monotonic()
    records = evaluate_env_partition(
        "metaworld/reach-v3", policies, [11, 12], PartitionSettings(
            env=EnvConfig(max_steps=5, use_images=False), max_workers=1,
            runtimes=RuntimeSettings(root=runtimes_root, max_size=f"{limit_mib}Mi", build_timeout_s=300)),
    )  # fmt: skip
    print(f"\npartition with 5 miners (3 unbuildable runtimes) in {time.monotonic() - started:.1f} s")
    by_uid = {uid: [r for r in records if r.uid == uid] for uid in range(1, 6)}
    assert all(len(episodes) == 2 for episodes in by_uid.values())
    for uid in (1, 5):
        assert all(r.error_kind is None and r.steps == 5 for r in by_uid[uid]), by_uid[uid]
    for uid in (2, 3, 4):
        assert all(r.error_kind == "deployment_failed" and r.steps == 0 for r in by_uid[uid]), by_uid[uid]
    assert by_uid[2][0].error.startswith(f"runtime not built: requirement '{SDIST_ONLY}' has no wheel for Python 3.12")
    assert by_uid[3][0].error == f"runtime not built: requirement '{MISSING}' not found on {PYPI_SIMPLE}"
    assert by_uid[4][0].error.startswith("runtime not built: runtime is ")
    assert by_uid[4][0].error.endswith(f"over the {limit_mib} MiB limit (KINITRO_EXECUTOR_MINER_RUNTIME_MAX_SIZE)")
    for uid in (2, 3, 4):
        print(f"uid {uid}: {by_uid[uid][0].error}")



@pytest.fixture
def full_disk(tmp_path) -> Iterator[Path]:
    """A runtime store on its own 8 MiB tmpfs: too small for the base set's wheels (numpy alone is more)."""
    root = tmp_path / "small-disk" / "runtimes"
    root.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "kinitro-test", str(root)],
                             capture_output=True, text=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root: {mounted.stderr.strip()}")
    try:
        yield root
    finally:
        subprocess.run(["umount", "--lazy", str(root)], check=False)


def test_a_full_disk_under_the_store_is_the_hosts_fault_and_the_partition_resumes_once_freed(full_disk, tmp_path):
    """Not the miner's `deployment_failed`: the partition raises DiskFull (its step is retried), leaves
    no half-built runtime, and plays every miner once the disk has room (an operator freed it)."""
    policies = [PolicyUnderTest(1, make_policy(tmp_path, "cowsay", f"{OWN_PACKAGE}==6.1\n", imports=OWN_PACKAGE)),
                PolicyUnderTest(2, RANDOM_POLICY)]  # fmt: skip
    settings = PartitionSettings(env=EnvConfig(max_steps=5, use_images=False), max_workers=1,
                                 runtimes=RuntimeSettings(root=full_disk, build_timeout_s=300))  # fmt: skip

    with pytest.raises(DiskFull) as raised:
        evaluate_env_partition("metaworld/reach-v3", policies, [11], settings)
    message = str(raised.value)
    print(f"\n{message}")
    assert message.startswith(f"disk full under {full_disk} while ") and "not the miner's" in message
    assert "kinitro runtimes prune" in message
    assert stored_runtimes(full_disk, images=False) == [] and not list(full_disk.glob(".build-*"))
    assert not list((full_disk / "index").glob("*.json"))

    subprocess.run(["mount", "-o", "remount,size=1g", str(full_disk)], check=True)
    records = evaluate_env_partition("metaworld/reach-v3", policies, [11], settings)
    assert [(r.uid, r.error_kind, r.steps) for r in records] == [(1, None, 5), (2, None, 5)]
    assert [r.kind for r in stored_runtimes(full_disk, images=False)] == ["venv"]


def test_uv_is_found_without_any_path_setup():
    from kinitro_dagster.miners.runtimes import uv_command

    version = subprocess.run([*uv_command(), "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("uv "), version


# -- docker mode: an image layer on the miner-runner image ---------------------------------------

RUNNER_IMAGE = os.environ.get("KINITRO_EXECUTOR_MINER_DEPLOYMENT_IMAGE", "kinitro/miner-runner:v1")


def in_image(image: str, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "run", "--rm", "--network", "none", image, "python", "-c", code],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.mark.docker
@pytest.mark.slow
def test_docker_runtime_is_an_image_layer_shared_by_miners_with_the_same_requirements(tmp_path):
    from kinitro_dagster.miners.deployment_pool import DeploymentPool
    from kinitro_dagster.miners.docker_deployment import DockerOptions
    from kinitro_dagster.miners.hub import fetch_snapshot, publish_to_cache
    from kinitro_dagster.miners.runtimes import ensure_image_runtime

    if subprocess.run(["docker", "image", "inspect", RUNNER_IMAGE], capture_output=True).returncode != 0:
        pytest.fail(f"docker mode tests need dockerd and {RUNNER_IMAGE}: run sim_images/setup-docker.sh "
                    "(needs root), or deselect with -m 'not docker'", pytrace=False)  # fmt: skip
    settings = RuntimeSettings(root=tmp_path / "state" / "runtimes", build_timeout_s=600, build_memory="1Gi")

    def published(uid: int, repo: str, requirements: str) -> PolicyUnderTest:
        source = make_policy(tmp_path / "src", repo.replace("/", "--"), requirements, imports=OWN_PACKAGE)
        snapshot = fetch_snapshot(repo, publish_to_cache(source, repo, cache_dir=tmp_path / "hub"),
                                  cache_dir=tmp_path / "hub")  # fmt: skip
        return PolicyUnderTest(uid, snapshot.path, repo=snapshot.repo, revision=snapshot.revision)

    alice = published(1, "alice/cowsay", f"{OWN_PACKAGE}==6.1\n")
    bob = published(2, "bob/cowsay", f"{OWN_PACKAGE} == 6.1  # same set\n")
    carol = published(3, "carol/missing", f"{MISSING}\n")
    runtime = None
    try:
        started = time.monotonic()
        runtime = ensure_image_runtime(alice.policy_dir, settings, RUNNER_IMAGE)
        built_s = time.monotonic() - started
        assert runtime is not None and runtime.built, "a kinitro/runtime image of an earlier run is in the way"
        assert runtime.location == f"kinitro/runtime:{runtime.id[:16]}" and runtime.pins == (f"{OWN_PACKAGE}==6.1",)
        started = time.monotonic()
        reused = ensure_image_runtime(bob.policy_dir, settings, RUNNER_IMAGE)
        reuse_s = time.monotonic() - started
        print(f"\nruntime image {runtime.location}: built in {built_s:.1f} s (adds {runtime.size_bytes / 2**10:.0f} "
              f"KiB to {RUNNER_IMAGE}), reused in {reuse_s * 1e3:.1f} ms")  # fmt: skip
        assert (reused.id, reused.location, reused.built) == (runtime.id, runtime.location, False)
        assert reuse_s < 1.0
        assert in_image(runtime.location, f"import {OWN_PACKAGE}").returncode == 0
        assert "No module named" in in_image(RUNNER_IMAGE, f"import {OWN_PACKAGE}").stderr
        user = subprocess.run(["docker", "image", "inspect", "-f", "{{.Config.User}}", runtime.location],
                              capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        assert user == "65532:65532"  # the runtime runs as the runner does: non-root
        assert "No module named 'pip'" in in_image(runtime.location, "import pip").stderr

        pool = DeploymentPool(prune=False)
        try:
            records = evaluate_env_partition(
                "metaworld/reach-v3", [alice, bob, carol], [11], PartitionSettings(
                    env=EnvConfig(max_steps=5, use_images=False), max_workers=1,
                    docker=DockerOptions(image=RUNNER_IMAGE, memory="1Gi", ttl_s=0), runtimes=settings),
                docker_pool=pool,
            )  # fmt: skip
        finally:
            pool.close()
        outcome = {r.uid: (r.steps, r.error_kind) for r in records}
        assert outcome == {1: (5, None), 2: (5, None), 3: (0, "deployment_failed")}, records
        assert records[2].error == f"runtime not built: requirement '{MISSING}' not found on {PYPI_SIMPLE}"

        tight = RuntimeSettings(root=settings.root, max_size="100Ki", build_timeout_s=600, build_memory="1Gi")
        dave = published(4, "dave/cowsay", f"{OWN_PACKAGE}==6.0\n")
        before = runtime_images()  # other runtimes (e.g. a cached torch one) may be on this engine
        with pytest.raises(RuntimeBuildError, match=r"^runtime is 0\.\d MiB, over the 0\.1 MiB limit"):
            ensure_image_runtime(dave.policy_dir, tight, RUNNER_IMAGE)
        assert runtime_images() == before  # the oversized one is gone
    finally:
        if runtime is not None:
            subprocess.run(["docker", "image", "rm", runtime.location], capture_output=True)


def runtime_images() -> set[str]:
    out = subprocess.run(["docker", "images", "-q", "--no-trunc", "--filter", "label=kinitro.runtime"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return set(out.split())


def test_unreachable_index_is_named_without_its_credentials(tmp_path):
    closed = RuntimeSettings(root=tmp_path / "runtimes", index_url="http://miner-bot:s3cret@127.0.0.1:9/simple",
                             build_timeout_s=120)  # fmt: skip
    with pytest.raises(RuntimeBuildError, match=r"^cannot reach the index http://127\.0\.0\.1:9/simple: ") as error:
        ensure_venv_runtime(make_policy(tmp_path, "p", f"{OWN_PACKAGE}==6.1\n"), closed)
    assert "s3cret" not in error.value.reason
