"""Who started a policy container, and where its socket lives: the identity of this evaluator
on its host, and the removal of containers whose evaluator is gone.

Every policy container carries labels (`kinitro.deployment=1`, repo, revision, the owner process
as `host/pid/start-time`, and the owner's own container when the evaluator runs in one), so a new
evaluator removes the leftovers of dead owner processes on this host and of owner containers that
are gone (a killed run container). A cycle's shared deployments (`cycle_deployments`) are left to
their own rules. Socket directories live under the shared run root, /dev/shm/kinitro, which
deploy/dagster.yaml bind-mounts into every run container at the same path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from kinitro_dagster.miners.deployments import (
    process_is_alive,
)
from kinitro_dagster.miners.docker_engine import docker_client

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

logger = logging.getLogger(__name__)

LABEL = "kinitro.deployment"
OWNER_CONTAINER_LABEL = "kinitro.owner_container"  # the evaluator's own container id, when it runs in one
SHARED_RUN_ROOT = Path("/dev/shm/kinitro")  # socket directories, when the host shares it (default_run_root)
SOCKET_MOUNT = "/run/policy"  # where a policy container sees its socket directory


def make_run_dir(run_root: Path | None = None) -> Path:
    """A new private (0700) directory for one deployment's socket directory and log."""
    return Path(tempfile.mkdtemp(prefix="kinitro-policy-", dir=run_root or default_run_root()))


def default_run_root() -> Path:
    """Where socket directories go: under /dev/shm, so files a policy writes there count against its memory.

    /dev/shm/kinitro when it exists: deploy/dagster.yaml bind-mounts the host's into every run
    container at that same path, so the host's engine finds the directories a run container makes.
    """
    for root in (SHARED_RUN_ROOT, SHARED_RUN_ROOT.parent):
        if root.is_dir() and os.access(root, os.W_OK | os.X_OK):
            return root
    return Path(tempfile.gettempdir())


def owner_id(pid: int | None = None) -> str:
    """`host/pid/start-time` of a process: tells a live owner from a dead one, even after pid reuse."""
    pid = pid or os.getpid()
    return f"{socket.gethostname()}/{pid}/{_start_time(pid)}"


def own_container_id() -> str | None:
    """The id of the docker container this process runs in (from the engine's bind mounts), else None."""
    global _own_container
    if _own_container is None:
        try:
            with open("/proc/self/mountinfo") as mounts:
                match = re.search(r"/containers/([0-9a-f]{64})/(?:hostname|hosts|resolv\.conf)\s", mounts.read())
        except OSError:
            match = None
        _own_container = match.group(1) if match else ""
    return _own_container or None


_own_container: str | None = None


def prune_leftovers() -> int:
    """Remove policy containers whose owner is gone; returns how many.

    The owner is a process on this host (gone: no such pid, or another process reused it), or a
    process in a container on this docker engine (gone: the container no longer runs, e.g. a run
    container that was killed and auto-removed). Another machine's containers are left alone.
    """
    client = docker_client()
    removed = 0
    host = socket.gethostname()
    here = own_container_id()
    for container in client.containers.list(all=True, filters={"label": f"{LABEL}=1"}):
        if container.labels.get("kinitro.scope"):
            continue  # a cycle's shared deployment: it outlives its starter (cycle_deployments)
        owner_container = container.labels.get(OWNER_CONTAINER_LABEL, "")
        if owner_container and owner_container != here:
            if _container_is_running(client, owner_container):
                continue
        else:
            owner_host, _, rest = container.labels.get("kinitro.owner", "").partition("/")
            pid_text, _, start = rest.partition("/")
            if owner_host != host or not pid_text.isdigit():
                continue  # another machine's: not ours to judge
            pid = int(pid_text)
            if process_is_alive(pid) and _start_time(pid) == start:
                continue
        with contextlib.suppress(Exception):
            container.remove(force=True)
            removed += 1
            _remove_run_dir(container)
    if removed:
        logger.warning("removed %d policy containers left by dead evaluator processes", removed)
    return removed


def _container_is_running(client: docker.DockerClient, container_id: str) -> bool:
    from docker.errors import NotFound

    try:
        return client.containers.get(container_id).status in ("running", "restarting", "paused")
    except NotFound:
        return False
    except Exception:  # the engine did not answer: do not judge
        return True


def _remove_run_dir(container: Container) -> None:
    """The socket directory of a removed container (`<run_root>/kinitro-policy-*/s`), if it is one of ours."""
    for mount in container.attrs.get("Mounts", []):
        if mount.get("Destination") == SOCKET_MOUNT:
            run_dir = Path(mount.get("Source", "")).parent
            if run_dir.name.startswith("kinitro-policy-"):
                shutil.rmtree(run_dir, ignore_errors=True)


def _start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[19].decode()
    except (OSError, IndexError):
        return "?"


def host_pid(container: Container) -> int | None:
    """The container's init process as this host sees it, or None (e.g. the evaluator is itself in a container)."""
    try:
        container.reload()
        pid = int(container.attrs["State"]["Pid"])
        with open(f"/proc/{pid}/cgroup") as cgroup:
            return pid if pid and container.id in cgroup.read() else None
    except (OSError, KeyError, ValueError):
        return None
    except Exception:  # a docker API error: the container is already gone
        return None
