"""Turn a cycle's chain commitments into evaluable miners (DESIGN §7).

Parse → fetch the snapshot → pin the first-seen block of (repo, revision) → detect copies.
Every miner comes out with a status and, when it is not evaluated, the reason; nothing raises
for one miner's bad commitment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from kinitro_dagster.miners.chain import ChainCommitment
from kinitro_dagster.miners.commitments import CommitmentError, parse_commitment, storable
from kinitro_dagster.miners.hub import Snapshot, SnapshotFetchError
from kinitro_dagster.warehouse.records import CommitmentRecord, CommitmentStatus

log = logging.getLogger(__name__)

FetchSnapshot = Callable[[str, str], Snapshot]
# (repo, full revision, block seen, content hash) -> the first block that (repo, revision) was ever seen
RecordFirstSeen = Callable[[str, str, int, str | None], int]


def resolve_commitments(
    commitments: list[ChainCommitment], *, fetch: FetchSnapshot, record_first_seen: RecordFirstSeen
) -> list[CommitmentRecord]:
    records = [_resolve_one(c, fetch=fetch, record_first_seen=record_first_seen) for c in commitments]
    return mark_copies(records)


def _resolve_one(
    commitment: ChainCommitment, *, fetch: FetchSnapshot, record_first_seen: RecordFirstSeen
) -> CommitmentRecord:
    base = CommitmentRecord(
        uid=commitment.uid, hotkey=commitment.hotkey, raw=storable(commitment.raw),
        commit_block=commitment.block, status=CommitmentStatus.OK,
    )
    try:
        parsed = parse_commitment(commitment.raw)
    except CommitmentError as exc:
        log.warning("commitment rejected uid=%s reason=%s", commitment.uid, exc)
        return replace(base, status=CommitmentStatus.UNPARSEABLE, reason=str(exc))
    try:
        snapshot = fetch(parsed.repo, parsed.revision)
    except SnapshotFetchError as exc:
        log.warning("snapshot fetch failed uid=%s repo=%s reason=%s", commitment.uid, parsed.repo, exc)
        return replace(base, status=CommitmentStatus.FETCH_FAILED, repo=parsed.repo,
                       revision=parsed.revision, reason=str(exc))
    first_seen = record_first_seen(snapshot.repo, snapshot.revision, commitment.block, snapshot.content_hash)
    return replace(base, repo=snapshot.repo, revision=snapshot.revision,
                   first_seen_block=first_seen, content_hash=snapshot.content_hash)


def mark_copies(records: list[CommitmentRecord]) -> list[CommitmentRecord]:
    """The same snapshot content under several miners: only the earliest committer is evaluated."""
    original_by_hash: dict[str, CommitmentRecord] = {}
    evaluable = [r for r in records if r.status is CommitmentStatus.OK and r.content_hash]
    for record in sorted(evaluable, key=lambda r: (r.first_seen_block, r.uid)):
        original_by_hash.setdefault(record.content_hash, record)
    out = []
    for record in records:
        original = original_by_hash.get(record.content_hash) if record.content_hash else None
        if record.status is CommitmentStatus.OK and original is not None and original.uid != record.uid:
            record = replace(
                record, status=CommitmentStatus.DUPLICATE, duplicate_of_uid=original.uid,
                reason=(f"same files as uid {original.uid} ({original.repo}@{original.revision[:8]}, "
                        f"first seen at block {original.first_seen_block})"),
            )
        out.append(record)
    return out
