"""The runtimes this host keeps, when each was last used, and pruning those nobody used for a while.

A runtime is built once per distinct resolved set and kept (`runtimes.py`); a torch runtime is
about 5 GiB, and every new release a miner's `torch>=2` resolves to makes another. Every use, a
build or a reuse, touches `<root>/used/<id>` (`runtimes.mark_used`); `prune_runtimes` removes the runtimes unused for
longer than the operator says (`kinitro runtimes prune --unused-days N`): the venv directory
(local mode) or the `kinitro/runtime:*` image (docker mode), with the index entries that lead to
it. A runtime being built is skipped (its build lock is held); an image a container still uses
is kept (docker refuses). The next miner that needs a pruned runtime rebuilds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kinitro_dagster.miners.runtimes import MANIFEST, RUNTIME_IMAGE_REPO

logger = logging.getLogger(__name__)

_RUNTIME_ID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class StoredRuntime:
    id: str
    kind: str  # "venv" or "image"
    location: str  # the venv directory, or the image tag
    size_bytes: int | None
    last_used: float  # epoch seconds: its last build or reuse (its build time if never recorded)


def stored_runtimes(root: Path, *, images: bool = True) -> list[StoredRuntime]:
    """Every runtime under `root` (venvs) and, with `images`, every runtime image on the docker host."""
    found = [_venv(root, path) for path in sorted(root.glob("*")) if _RUNTIME_ID.fullmatch(path.name)]
    runtimes = [r for r in found if r is not None]
    if images:
        runtimes += _images(root)
    return sorted(runtimes, key=lambda r: r.last_used)


def prune_runtimes(root: Path, unused_for_s: float, *, dry_run: bool = False,
                   images: bool = True) -> tuple[list[StoredRuntime], list[tuple[StoredRuntime, str]]]:  # fmt: skip
    """Remove runtimes unused for `unused_for_s`; returns (removed, [(kept, why)])."""
    cutoff = time.time() - unused_for_s
    removed, kept = [], []
    for runtime in stored_runtimes(root, images=images):
        if runtime.last_used >= cutoff:
            continue
        why = None if dry_run else _remove(root, runtime)
        if why is None:
            removed.append(runtime)
        else:
            kept.append((runtime, why))
    if removed and not dry_run:
        logger.info("pruned %d runtimes unused for %.0f days", len(removed), unused_for_s / 86400)
    return removed, kept


# -- helpers ------------------------------------------------------------------------------------


def _last_used(root: Path, runtime_id: str, fallback: float) -> float:
    try:
        return (root / "used" / runtime_id).stat().st_mtime
    except OSError:
        return fallback


def _venv(root: Path, path: Path) -> StoredRuntime | None:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    built_at = float(manifest.get("built_at") or path.stat().st_mtime)
    return StoredRuntime(path.name, "venv", str(path), manifest.get("size_bytes"),
                         _last_used(root, path.name, built_at))  # fmt: skip


def _images(root: Path) -> list[StoredRuntime]:
    from kinitro_dagster.miners.docker_engine import DockerSetupError, docker_client

    try:
        listed = docker_client().images.list(filters={"label": "kinitro.runtime"})
    except DockerSetupError:
        return []  # no docker on this host: no image runtimes to keep or prune
    runtimes = []
    for image in listed:
        runtime_id = image.labels.get("kinitro.runtime", "")
        tags = [t for t in image.tags if t.startswith(f"{RUNTIME_IMAGE_REPO}:")]
        if not _RUNTIME_ID.fullmatch(runtime_id) or not tags:
            continue
        created = _epoch(image.attrs.get("Created", ""))
        runtimes.append(StoredRuntime(runtime_id, "image", tags[0], int(image.attrs.get("Size", 0)),
                                      _last_used(root, runtime_id, created)))  # fmt: skip
    return runtimes


def _epoch(created: str) -> float:
    """Docker's `Created` (RFC 3339 with nanoseconds) in epoch seconds; now if unreadable."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", created.replace("Z", "+00:00"))).timestamp()
    except ValueError:
        return time.time()


def _remove(root: Path, runtime: StoredRuntime) -> str | None:
    """Remove one runtime and its index entries; None when done, else why it was kept."""
    with _unless_building(root, runtime.id) as free:
        if not free:
            return "being built or checked right now"
        if runtime.kind == "venv":
            shutil.rmtree(runtime.location, ignore_errors=True)
        else:
            from docker.errors import APIError

            from kinitro_dagster.miners.docker_engine import docker_client

            try:
                docker_client().images.remove(runtime.location)  # no force: an image in use stays
            except APIError as error:
                return f"docker keeps it: {error.explanation or error}"
        for entry in (root / "index").glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                if json.loads(entry.read_text()).get("id") == runtime.id:
                    entry.unlink()
        with contextlib.suppress(OSError):
            (root / "used" / runtime.id).unlink()
    return None


@contextlib.contextmanager
def _unless_building(root: Path, runtime_id: str) -> Iterator[bool]:
    """Hold the runtime's build lock (runtimes._build_lock's file) if nobody does; yields whether we do."""
    locks = root / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{runtime_id}.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
