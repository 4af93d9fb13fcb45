"""The digest a weights row is signed with, and the exact bytes that are signed.

A cycle's inputs are split into parts, each hashed on its own so that a verifier can say which part
differs: the cycle (key, block, block hash), its recorded configuration, the scoring parameters,
its commitments, and one part per env's episode rows. The digest is the hash of the parts.
Serialization is canonical JSON: sorted keys, no whitespace, UTF-8, and floats as Python's
shortest round-trip repr, so every float hashes by its exact value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from kinitro_dagster.warehouse.records import CommitmentRecord, CycleConfiguration, EpisodeRecord

DIGEST_VERSION = 1
SIGNED_PREFIX = b"kinitro-weights/v1\n"
EPISODES_PART = "episodes/"


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def commitment_rows(commitments: Sequence[CommitmentRecord]) -> list[dict[str, Any]]:
    return [{**asdict(c), "status": str(c.status)} for c in sorted(commitments, key=lambda c: c.uid)]


def episode_rows(episodes: Sequence[EpisodeRecord]) -> list[dict[str, Any]]:
    return [asdict(e) for e in sorted(episodes, key=lambda e: (e.uid, e.episode))]


def digest_parts(
    *,
    cycle_key: str,
    block: int,
    block_hash: str,
    configuration: CycleConfiguration | None,
    scoring: Mapping[str, Any],
    commitments: Sequence[CommitmentRecord],
    episodes_by_env: Mapping[str, Sequence[EpisodeRecord]],
) -> dict[str, str]:
    """{part name: sha256 hex} of a cycle's inputs; `scoring` holds the scoring parameters and the
    code version that scored."""
    parts = {
        "cycle": sha256_hex(canonical_json({"cycle_key": cycle_key, "block": block, "block_hash": block_hash})),
        "configuration": sha256_hex(canonical_json(configuration.to_json() if configuration else None)),
        "scoring": sha256_hex(canonical_json(dict(scoring))),
        "commitments": sha256_hex(canonical_json(commitment_rows(commitments))),
    }
    for env_id in sorted(episodes_by_env):
        parts[EPISODES_PART + env_id] = sha256_hex(canonical_json(episode_rows(episodes_by_env[env_id])))
    return parts


def digest_of(parts: Mapping[str, str]) -> str:
    return sha256_hex(canonical_json({"version": DIGEST_VERSION, "parts": dict(parts)}))


def signed_message(
    cycle_key: str, block: int, digest: str, weights: Mapping[int, float], u16: Mapping[int, int]
) -> bytes:
    """What the backend's hotkey signs: the cycle, the digest of its inputs and the weights it
    published (floats and the u16 values a validator sets), uids in ascending order."""
    body = {
        "cycle_id": cycle_key,
        "block": int(block),
        "digest": digest,
        "weights": [[int(uid), float(weights[uid])] for uid in sorted(weights)],
        "weights_u16": [[int(uid), int(u16[uid])] for uid in sorted(u16)],
    }
    return SIGNED_PREFIX + canonical_json(body)
