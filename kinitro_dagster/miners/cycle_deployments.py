"""Policy containers that live for a cycle, shared by every evaluator process on one Docker host.

In production every env partition runs in its own run container. With a pool per process, each
miner would be deployed and warmed up once per env; with this pool, once per cycle (DESIGN §7).

- **Found by label** on the Docker engine: `kinitro.scope=<cycle>`, `kinitro.key=<digest>` (repo,
  revision, image, limits, environment: what makes two deployments interchangeable),
  `kinitro.host` (the host kernel's boot id, which every container on the host shares, and the
  device and inode of the run root, /dev/shm/kinitro, which every container that bind-mounts it
  shares: deployments that an evaluator on another machine, or one without the shared run root,
  started on the same engine are neither used nor judged here) and `kinitro.run_dir` (its socket
  directory's parent).
- **Exclusive lease.** A partition holds a deployment while it plays: an `flock` on
  `<run_dir>/lease`. `/act` carries no episode id, so two partitions interleaving episodes on one
  policy server would corrupt a stateful policy (a recurrent state, a queue of action chunks). A
  partition that finds every deployment of its key leased starts a replica: a miner is deployed at
  most once per partition running at the same time, so once per cycle when they run one at a time.
- **A dead holder frees its lease.** The kernel drops the lock of a killed run container, so the
  retried partition takes the deployment over instead of starting another.
- **Idle TTL from last use** (`KINITRO_EXECUTOR_MINER_DEPLOYMENT_TTL_SECONDS`): a release touches the
  lease file; a deployment idle for longer is removed by the next evaluator that looks (each pool
  when it starts and at every release). `retire_scope` removes a scored cycle's idle deployments
  (pareto_scores calls it); one still leased (a straggling partition) falls to the TTL.
- A deployment that failed (crashed, timed out, broke a limit), and every one of a partition that
  failed, is removed at release, never handed on.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kinitro_dagster.miners.deployments import DeploymentError
from kinitro_dagster.miners.docker_deployment import DockerDeployment, DockerOptions
from kinitro_dagster.miners.docker_engine import docker_client, require_image
from kinitro_dagster.miners.host import LABEL, default_run_root, make_run_dir, prune_leftovers

if TYPE_CHECKING:
    from docker.models.containers import Container

logger = logging.getLogger(__name__)

SCOPE_LABEL = "kinitro.scope"
KEY_LABEL = "kinitro.key"
HOST_LABEL = "kinitro.host"
RUN_DIR_LABEL = "kinitro.run_dir"
_LEASE_NAME = "lease"


def host_identity(run_root: Path | None = None) -> str:
    """Who can share a deployment: the same kernel (boot id) and the same run root (device, inode)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "?"
    root = os.stat(run_root or default_run_root())
    return f"{boot}.{root.st_dev}.{root.st_ino}"


def deployment_key(deployment: DockerDeployment) -> str:
    """What makes two deployments interchangeable: snapshot, image, limits and environment."""
    options = deployment.options
    parts = [deployment.repo or str(deployment.snapshot_dir), deployment.revision or "", options.image,
             options.cpus, options.memory, options.pids_limit, options.tmp_size, options.gpu_count,
             sorted(deployment.env.items())]  # fmt: skip
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class RetireReport:
    removed: int  # idle deployments of the scope, now gone
    busy: int  # still leased by a partition: left to the idle TTL


class CycleDeploymentPool:
    """Deployments of one scope (a cycle), shared by this host's evaluators (module docstring).

    Same interface as `DeploymentPool`: `acquire` hands out a leased running deployment of the
    same key, or a new unstarted one whose lease is already held (the caller starts it); `release`
    returns them. Thread-safe within the process; exclusive across processes by the lease.
    """

    def __init__(self, scope: str, *, run_root: Path | None = None) -> None:
        self.scope = scope
        self.run_root = run_root
        self._leases: dict[int, tuple[DockerDeployment, int]] = {}  # id(deployment) -> (it, lease fd)
        self._lock = threading.Lock()
        self._ready_images: set[str] = set()
        self._reap_ttl_s: float | None = None  # the idle TTL this pool reaps with (None: not started)
        self._started_here = 0
        self._reused_here = 0

    def acquire(
        self,
        snapshot_dir: Path,
        options: DockerOptions,
        *,
        repo: str | None = None,
        revision: str | None = None,
        env: dict[str, str] | None = None,
    ) -> DockerDeployment:
        self._prepare(options)
        deployment = DockerDeployment(snapshot_dir, options=options, repo=repo, revision=revision, env=env,
                                      run_root=self.run_root)  # fmt: skip
        key = deployment_key(deployment)
        if options.ttl_s > 0:
            for container in self._containers(key):
                adopted = self._adopt(deployment, container)
                if adopted is not None:
                    return adopted
        run_dir = make_run_dir(self.run_root)
        fd = _create_lease(run_dir)
        deployment.run_dir = run_dir
        deployment.extra_labels = {SCOPE_LABEL: self.scope, KEY_LABEL: key, HOST_LABEL: self._host,
                                   RUN_DIR_LABEL: str(run_dir)}  # fmt: skip
        with self._lock:
            self._leases[id(deployment)] = (deployment, fd)
            self._started_here += 1
        return deployment

    def release(self, deployments: Iterable[DockerDeployment], *, failed: bool = False) -> None:
        """Hand deployments on (last use: now), or remove them: failed, dead, or reuse off (TTL 0)."""
        deployments = list(deployments)
        if not deployments:  # a partition releases its failed ones and the rest: often none of the first
            return
        for deployment in deployments:
            with self._lock:
                _, fd = self._leases.pop(id(deployment), (None, None))
            if fd is None:  # not leased from this pool
                deployment.stop()
                continue
            try:
                if failed or deployment.options.ttl_s <= 0 or not deployment.is_alive():
                    deployment.stop()
                    if deployment.run_dir is not None:  # one never launched has no container to take it
                        shutil.rmtree(deployment.run_dir, ignore_errors=True)
                else:
                    os.utime(fd)
                    deployment.detach()
            finally:
                os.close(fd)
        if self._reap_ttl_s:
            reap_idle_deployments(self._reap_ttl_s, self.run_root)

    def counts(self) -> dict[str, int]:
        """Deployments this pool started and took over from other evaluators so far."""
        return {"started": self._started_here, "reused": self._reused_here}

    # -- helpers --------------------------------------------------------------------------------

    @property
    def _host(self) -> str:
        return host_identity(self.run_root)

    def _prepare(self, options: DockerOptions) -> None:
        """Once per image: it must exist; once per pool: remove dead evaluators' and idle leftovers."""
        if self._reap_ttl_s is None:
            prune_leftovers()
            if options.ttl_s > 0:  # TTL 0 (no reuse here) must not reap what others reuse
                reap_idle_deployments(options.ttl_s, self.run_root)
        self._reap_ttl_s = options.ttl_s
        if options.image not in self._ready_images:
            require_image(options.image)
            self._ready_images.add(options.image)

    def _containers(self, key: str) -> list[Container]:
        filters = {"label": [f"{LABEL}=1", f"{SCOPE_LABEL}={self.scope}", f"{KEY_LABEL}={key}",
                             f"{HOST_LABEL}={self._host}"]}  # fmt: skip
        return docker_client().containers.list(filters=filters)  # running ones only

    def _adopt(self, deployment: DockerDeployment, container: Container) -> DockerDeployment | None:
        """Lease `container` and take it over if it still serves; None if it is leased or broken."""
        run_dir = Path(container.labels.get(RUN_DIR_LABEL, ""))
        fd = try_lease(run_dir)
        if fd is None:
            return None
        deployment.attach(container, run_dir)
        try:
            # Healthy (and sealed) already, or still warming up: its starter was killed meanwhile.
            deployment.wait_until_healthy()
        except DeploymentError as error:  # it is removed: the caller starts a new one
            logger.warning("removed a shared policy container that does not serve repo=%s container=%s: %s",
                           deployment.repo, container.short_id, str(error).splitlines()[0])  # fmt: skip
            os.close(fd)
            deployment.run_dir = deployment.socket_path = None
            return None
        with self._lock:
            self._leases[id(deployment)] = (deployment, fd)
            self._reused_here += 1
        logger.info("policy container taken over repo=%s revision=%s container=%s scope=%s",
                    deployment.repo, (deployment.revision or "")[:12], container.short_id, self.scope,
                    extra={"repo": deployment.repo, "container": container.id, "scope": self.scope})  # fmt: skip
        return deployment


def try_lease(run_dir: Path) -> int | None:
    """The lease of the deployment in `run_dir`, held (an open fd), or None: held elsewhere, or gone."""
    path = run_dir / _LEASE_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Removed between our open and our lock (retired by another evaluator): not a lease any more.
        if os.fstat(fd).st_ino != os.stat(path, follow_symlinks=False).st_ino:
            raise OSError("lease file replaced")
    except OSError:
        os.close(fd)
        return None
    return fd


def _create_lease(run_dir: Path) -> int:
    fd = os.open(run_dir / _LEASE_NAME, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _shared_containers(scope: str | None, run_root: Path | None) -> list[Container]:
    scoped = f"{SCOPE_LABEL}={scope}" if scope else SCOPE_LABEL
    labels = [f"{LABEL}=1", f"{HOST_LABEL}={host_identity(run_root)}", scoped]
    return docker_client().containers.list(all=True, filters={"label": labels})


def _remove_leased(container: Container, run_dir: Path, fd: int) -> None:
    """Remove a container whose lease we hold, then its run directory (the lease file with it)."""
    try:
        with contextlib.suppress(Exception):
            container.remove(force=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    finally:
        os.close(fd)


def reap_idle_deployments(ttl_s: float, run_root: Path | None = None) -> int:
    """Remove this host's shared deployments that are idle past `ttl_s`, dead, or lost their run
    directory; returns how many. Leased ones are never touched."""
    removed = 0
    now = time.time()
    for container in _shared_containers(None, run_root):
        run_dir = Path(container.labels.get(RUN_DIR_LABEL, ""))
        fd = try_lease(run_dir)
        if fd is None:
            # Held elsewhere, or being removed by another evaluator; gone with its directory (a hand
            # `rm`): nobody can ever lease it again.
            if not run_dir.exists():
                with contextlib.suppress(Exception):
                    container.remove(force=True)
                    removed += 1
            continue
        idle_s = now - os.fstat(fd).st_mtime
        if idle_s >= ttl_s or container.status != "running":
            _remove_leased(container, run_dir, fd)
            removed += 1
        else:
            os.close(fd)  # released without touching: its last use stays what it was
    if removed:
        logger.info("removed %d idle shared policy containers (idle TTL %g s)", removed, ttl_s)
    return removed


def retire_scope(scope: str, run_root: Path | None = None) -> RetireReport:
    """Remove the scope's deployments that no partition holds (the cycle is scored)."""
    removed = busy = 0
    for container in _shared_containers(scope, run_root):
        run_dir = Path(container.labels.get(RUN_DIR_LABEL, ""))
        fd = try_lease(run_dir)
        if fd is None:
            if (run_dir / _LEASE_NAME).exists():
                busy += 1
                continue
            with contextlib.suppress(Exception):
                container.remove(force=True)
            removed += 1
            continue
        _remove_leased(container, run_dir, fd)
        removed += 1
    logger.info("retired the policy containers of %s removed=%d still_leased=%d", scope, removed, busy,
                extra={"scope": scope, "removed": removed, "busy": busy})  # fmt: skip
    return RetireReport(removed=removed, busy=busy)


_pools: dict[tuple[int, str], CycleDeploymentPool] = {}
_pools_lock = threading.Lock()


def cycle_pool(scope: str) -> CycleDeploymentPool:
    """This process's pool for `scope` (partitions of the same cycle in one process share it)."""
    with _pools_lock:
        return _pools.setdefault((os.getpid(), scope), CycleDeploymentPool(scope))
