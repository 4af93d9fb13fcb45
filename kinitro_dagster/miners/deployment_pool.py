"""A process's own cache of docker deployments, reused by (repo, revision, image, limits) until
idle for a TTL; a cycle's partitions share theirs across processes instead (`cycle_deployments`)."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kinitro_dagster.miners.docker_deployment import DockerDeployment, DockerOptions
from kinitro_dagster.miners.docker_engine import require_image
from kinitro_dagster.miners.host import prune_leftovers

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

@dataclass
class _Entry:
    deployment: DockerDeployment
    last_used: float
    in_use: int = 0


class DeploymentPool:
    """Running docker deployments of this process, reused by (repo, revision, image, limits) until
    idle for `options.ttl_s` (`CycleDeploymentPool` shares them between processes for a cycle).

    `acquire` hands out a running deployment of the same snapshot or a new, unstarted one (the
    caller starts it, e.g. with `start_all`); `release` puts them back and tears down those that
    failed, died, expired or were never shared. `close` (also run at process exit) removes all.
    Thread-safe; the atexit hook acts only in the process that made the pool, not in forked children.
    """

    def __init__(self, *, prune: bool = True) -> None:
        self._entries: dict[tuple, _Entry] = {}
        self._lock = threading.Lock()
        self._owner_pid = os.getpid()
        self._pruned = not prune
        self._ready_images: set[str] = set()
        atexit.register(self._close_at_exit)

    def acquire(
        self,
        snapshot_dir: Path,
        options: DockerOptions,
        *,
        repo: str | None = None,
        revision: str | None = None,
        env: dict[str, str] | None = None,
    ) -> DockerDeployment:
        self._prepare(options.image)
        deployment = DockerDeployment(snapshot_dir, options=options, repo=repo, revision=revision, env=env)
        key = (
            deployment.repo or str(deployment.snapshot_dir),
            deployment.revision,
            options.image,
            options.cpus,
            options.memory,
            options.pids_limit,
            options.tmp_size,
            tuple(sorted((env or {}).items())),
        )
        stale: DockerDeployment | None = None
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.in_use == 0:
                if entry.deployment.is_alive() and not self._expired(entry, options):
                    entry.in_use += 1
                    logger.info(
                        "policy container reused repo=%s container=%s",
                        deployment.repo,
                        entry.deployment.container_id,
                        extra={"repo": deployment.repo},
                    )
                    return entry.deployment
                stale = self._entries.pop(key).deployment
                entry = None
            if entry is None and options.ttl_s > 0:
                self._entries[key] = _Entry(deployment, time.monotonic(), in_use=1)
        if stale is not None:
            stale.stop()
        return deployment  # in use elsewhere (the same snapshot twice at once): a private deployment

    def release(self, deployments: Iterable[DockerDeployment], *, failed: bool = False) -> None:
        """Give deployments back; stop failed (`failed=True`: all of these), dead, expired and private ones."""
        to_stop = []
        with self._lock:
            cached = {id(e.deployment): (k, e) for k, e in self._entries.items()}
            for deployment in deployments:
                key, entry = cached.get(id(deployment), (None, None))
                if entry is None:
                    to_stop.append(deployment)
                    continue
                entry.in_use -= 1
                entry.last_used = time.monotonic()
                dead = failed or not deployment.is_alive() or self._expired(entry, deployment.options)
                if dead and entry.in_use == 0:
                    del self._entries[key]
                    to_stop.append(deployment)
            for key, entry in list(self._entries.items()):  # idle ones that expired meanwhile
                if entry.in_use == 0 and self._expired(entry, entry.deployment.options):
                    del self._entries[key]
                    to_stop.append(entry.deployment)
        for deployment in to_stop:
            deployment.stop()

    def close(self) -> None:
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            entry.deployment.stop()

    def cached(self) -> int:
        """How many deployments the cache holds (running or not yet started)."""
        return len(self._entries)

    def _prepare(self, image: str) -> None:
        """Once: remove dead evaluators' leftovers; per image: fail early (DockerSetupError) if it is missing."""
        if image in self._ready_images:
            return
        if not self._pruned:
            prune_leftovers()
            self._pruned = True
        require_image(image)
        self._ready_images.add(image)

    @staticmethod
    def _expired(entry: _Entry, options: DockerOptions) -> bool:
        return time.monotonic() - entry.last_used >= options.ttl_s

    def _close_at_exit(self) -> None:
        if os.getpid() == self._owner_pid:
            self.close()


_shared_pool: DeploymentPool | None = None
_shared_lock = threading.Lock()


def shared_pool() -> DeploymentPool:
    """This process's deployment cache (one per process; partitions in the same process share it)."""
    global _shared_pool
    with _shared_lock:
        if _shared_pool is None or _shared_pool._owner_pid != os.getpid():
            _shared_pool = DeploymentPool()
        return _shared_pool
