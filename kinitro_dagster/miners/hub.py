"""Fetch miners' policy snapshots from the HuggingFace hub into a shared cache.

`fetch_snapshot` is the real `huggingface_hub.snapshot_download` path. Offline (these machines,
tests, the demo) it reads the same cache layout that a download writes; `publish_to_cache`
builds that layout from a local directory, so the demo exercises the real client code.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import HFValidationError

from kinitro_dagster.miners.disk import DiskFull, is_disk_full

_IGNORED_PARTS = {"__pycache__", ".git", ".cache"}
FULL_REVISION_LENGTH = 40


class SnapshotFetchError(RuntimeError):
    """The snapshot could not be fetched; the message is recorded as the miner's `fetch_failed` reason."""


@dataclass(frozen=True)
class Snapshot:
    repo: str
    revision: str  # full 40-hex commit
    path: Path
    content_hash: str  # sha256 over the snapshot's files: the same policy under two names hashes equal


def fetch_snapshot(repo: str, revision: str, *, cache_dir: Path, token: str | None = None) -> Snapshot:
    full_revision = resolve_revision(repo, revision, cache_dir=cache_dir, token=token)
    try:
        path = snapshot_download(repo, revision=full_revision, cache_dir=cache_dir, token=token,
                                 local_files_only=_offline())
    except (OSError, HFValidationError) as exc:  # OSError: also the hub's not-found and HTTP errors
        if is_disk_full(exc):  # a download into a full cache: this host's fault, the miner keeps its place
            raise DiskFull(str(cache_dir), f"fetching {repo}@{full_revision[:12]}", _first_line(exc),
                           fix=None) from exc  # fmt: skip
        raise SnapshotFetchError(f"cannot fetch {repo}@{full_revision[:12]}: {_first_line(exc)}") from exc
    snapshot_path = Path(path)
    return Snapshot(repo=repo, revision=full_revision, path=snapshot_path, content_hash=content_hash(snapshot_path))


def cached_snapshot(repo: str, revision: str, *, cache_dir: Path) -> Snapshot | None:
    """The snapshot of a full `revision` already in the cache, without asking the hub (a commit never
    changes: what a cycle fetched is what a replay reads); None when it is not there."""
    path = _storage_folder(cache_dir, repo) / "snapshots" / revision
    if len(revision) != FULL_REVISION_LENGTH or not path.is_dir():
        return None
    return Snapshot(repo=repo, revision=revision, path=path, content_hash=content_hash(path))


def resolve_revision(repo: str, revision: str, *, cache_dir: Path, token: str | None = None) -> str:
    """A short revision becomes the full commit: from the local cache if it is there, else from the hub."""
    if len(revision) == FULL_REVISION_LENGTH:
        return revision
    snapshots = _storage_folder(cache_dir, repo) / "snapshots"
    matches = sorted(p.name for p in snapshots.glob(f"{revision}*")) if snapshots.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise SnapshotFetchError(f"revision {revision} of {repo} is ambiguous in the cache: {', '.join(matches)}")
    if _offline():
        raise SnapshotFetchError(
            f"revision {revision} of {repo} is not in the cache at {cache_dir} and the hub is offline (HF_HUB_OFFLINE)"
        )
    try:
        info = HfApi(token=token).model_info(repo, revision=revision)
    except Exception as exc:  # the hub client raises many kinds; all mean "cannot resolve"
        raise SnapshotFetchError(f"cannot resolve revision {revision} of {repo}: {_first_line(exc)}") from exc
    if not info.sha:
        raise SnapshotFetchError(f"the hub returned no commit for {repo}@{revision}")
    return info.sha


def content_hash(directory: Path) -> str:
    """sha256 over (relative path, file bytes) of every file, in sorted order; symlinks are followed."""
    digest = hashlib.sha256()
    for path in _policy_files(directory):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def publish_to_cache(source_dir: Path, repo: str, *, cache_dir: Path) -> str:
    """Lay `source_dir` out as the hub cache does after `snapshot_download(repo)`; return the revision.

    The revision is derived from the content, so publishing the same files twice gives the same
    commit, as pushing unchanged files to the hub would not create a new one.
    """
    revision = hashlib.sha1(b"kinitro-local:" + content_hash(source_dir).encode()).hexdigest()
    storage = _storage_folder(cache_dir, repo)
    snapshot = storage / "snapshots" / revision
    for path in _policy_files(source_dir):
        data = path.read_bytes()
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            blob.write_bytes(data)
        link = snapshot / path.relative_to(source_dir)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(blob, link.parent))
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / "main").write_text(revision)
    return revision


def _policy_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise SnapshotFetchError(f"{directory} is not a directory")
    return sorted(
        p for p in directory.rglob("*")
        if p.is_file() and not _IGNORED_PARTS.intersection(p.relative_to(directory).parts)
    )


def _storage_folder(cache_dir: Path, repo: str) -> Path:
    return Path(cache_dir) / f"models--{repo.replace('/', '--')}"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def storage_folder_of(snapshot_dir: Path) -> Path | None:
    """The repo's cache folder (`models--org--name`) holding a hub-cache snapshot
    (`.../models--org--name/snapshots/<rev>`), or None for any other directory."""
    snapshot_dir = Path(snapshot_dir)
    storage = snapshot_dir.parent.parent
    if snapshot_dir.parent.name != "snapshots" or not storage.name.startswith("models--"):
        return None
    return storage


def hub_identity(snapshot_dir: Path) -> tuple[str | None, str | None]:
    """(repo, revision) of a hub-cache snapshot path (`models--org--name/snapshots/<rev>`), else Nones."""
    storage = storage_folder_of(snapshot_dir)
    if storage is None:
        return None, None
    return storage.name.removeprefix("models--").replace("--", "/"), Path(snapshot_dir).name
