"""Runtimes a host keeps, and pruning those no miner used lately: real venvs and images, real uv."""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from kinitro_dagster.cli import main
from kinitro_dagster.miners.runtime_store import prune_runtimes, stored_runtimes
from kinitro_dagster.miners.runtimes import RuntimeSettings, ensure_image_runtime, ensure_venv_runtime
from tests.miners.test_docker_deployment import publish
from tests.miners.test_runtimes import OWN_PACKAGE, RUNNER_IMAGE, make_policy

DAY = 86400.0
# January 1970: older than anything real on this docker host, so a prune with a cutoff just after
# it removes only what a test put there (a cached torch runtime stays).
JANUARY_1970 = 1_000_000.0


def backdate(root: Path, runtime_id: str, days: float) -> None:
    set_last_used(root, runtime_id, time.time() - days * DAY)


def set_last_used(root: Path, runtime_id: str, epoch: float) -> None:
    os.utime(root / "used" / runtime_id, (epoch, epoch))


def unused_since_1970() -> float:
    return time.time() - 2 * JANUARY_1970


@pytest.fixture
def two_runtimes(tmp_path):
    settings = RuntimeSettings(root=tmp_path / "state" / "runtimes", build_timeout_s=300)
    old = make_policy(tmp_path, "old", f"{OWN_PACKAGE}==6.0\n", imports=OWN_PACKAGE)
    new = make_policy(tmp_path, "new", f"{OWN_PACKAGE}==6.1\n", imports=OWN_PACKAGE)
    return settings, old, ensure_venv_runtime(old, settings), ensure_venv_runtime(new, settings)


def test_runtimes_unused_past_the_threshold_are_removed_and_rebuilt_when_needed(two_runtimes):
    settings, old_policy, old, new = two_runtimes
    root = settings.root
    assert {r.id for r in stored_runtimes(root, images=False)} == {old.id, new.id}
    backdate(root, old.id, 30)

    would, _ = prune_runtimes(root, 14 * DAY, dry_run=True, images=False)
    assert [r.id for r in would] == [old.id] and Path(old.location).is_dir()  # a dry run removes nothing

    removed, kept = prune_runtimes(root, 14 * DAY, images=False)
    assert [r.id for r in removed] == [old.id] and kept == []
    assert not Path(old.location).exists() and Path(new.location).is_dir()
    assert not (root / "used" / old.id).exists()
    assert [r.id for r in stored_runtimes(root, images=False)] == [new.id]

    # A reuse counts as a use: the kept one is now fresh; the pruned one is rebuilt on demand.
    again = ensure_venv_runtime(old_policy, settings)
    assert (again.id, again.built) == (old.id, True) and Path(again.python).is_file()


def test_a_runtime_being_built_is_kept(two_runtimes):
    settings, _, old, _ = two_runtimes
    backdate(settings.root, old.id, 30)
    with open(settings.root / ".locks" / f"{old.id}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a builder holds it
        removed, kept = prune_runtimes(settings.root, 14 * DAY, images=False)
    assert removed == [] and [(r.id, why) for r, why in kept] == [(old.id, "being built or checked right now")]
    assert Path(old.location).is_dir()


def test_cli_lists_and_prunes(two_runtimes, monkeypatch):
    settings, _, old, new = two_runtimes
    monkeypatch.setenv("KINITRO_STATE_DIR", str(settings.root.parent))
    listed = CliRunner().invoke(main, ["runtimes", "list"])
    assert listed.exit_code == 0 and old.id[:16] in listed.output and new.id[:16] in listed.output, listed.output
    backdate(settings.root, old.id, 30)
    # --venvs-only: this docker host's runtime images (a cached torch one) are not the test's to prune.
    pruned = CliRunner().invoke(main, ["runtimes", "prune", "--unused-days", "14", "--venvs-only"])
    assert pruned.exit_code == 0, pruned.output
    assert f"removed venv {old.location}" in pruned.output and "removed 1 runtime(s)" in pruned.output


@pytest.mark.docker
@pytest.mark.slow
def test_an_image_runtime_a_container_uses_is_kept_until_it_is_gone(docker_image, tmp_path):
    import docker

    settings = RuntimeSettings(root=tmp_path / "runtimes", build_timeout_s=600, build_memory="1Gi")
    policy = publish(make_policy(tmp_path, "img", f"{OWN_PACKAGE}==6.0\n"), "erin/prune", tmp_path / "hub")
    runtime = ensure_image_runtime(policy.policy_dir, settings, RUNNER_IMAGE)
    client = docker.from_env()
    container = client.containers.create(runtime.location, ["true"])
    try:
        set_last_used(settings.root, runtime.id, JANUARY_1970)
        removed, kept = prune_runtimes(settings.root, unused_since_1970())
        assert removed == [] and [r.id for r, _ in kept] == [runtime.id], kept
        assert "docker keeps it" in kept[0][1]
    finally:
        container.remove(force=True)
    removed, _ = prune_runtimes(settings.root, unused_since_1970())
    assert [r.location for r in removed] == [runtime.location]
    images = subprocess.run(["docker", "images", "-q", runtime.location], capture_output=True, text=True, check=True)
    assert images.stdout.strip() == ""
