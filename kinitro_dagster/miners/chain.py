"""Chain readers: where cycles get their clock (head block) and miners their commitments.

`ChainReader` is the seam: `FileChain` (a YAML file: demo, tests, offline replays) and the
Bittensor reader implement the same three calls, so nothing downstream knows which one it has.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

BLOCK_TIME_SECONDS = 12


@dataclass(frozen=True)
class BlockInfo:
    number: int
    hash: str


@dataclass(frozen=True)
class ChainCommitment:
    """A registered miner and the last commitment it made (at or before the block asked for)."""

    uid: int
    hotkey: str
    raw: str
    block: int


class ChainReader(Protocol):
    def head(self) -> BlockInfo: ...

    def block_hash(self, number: int) -> str: ...

    def commitments(self, at_block: int) -> list[ChainCommitment]: ...


class ChainFileError(ValueError):
    """The chain file is missing or malformed; the message names the file and the field."""


class FileChain:
    """A chain kept in a YAML file.

    ```yaml
    name: demo                 # salts the block hashes
    head_block: 1200           # fixed head; or leave it out and give genesis_unix:
    genesis_unix: 1764000000   # head advances one block per 12 s from this time
    miners:
      - {uid: 0, hotkey: 5Expert, commitment: "kinitro-demo/scripted-expert:3f2a9c1b", block: 10}
    ```
    The file is re-read on every call, so editing it (a new commitment, a later head) is seen
    by the next sensor tick, as a live chain would be.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def head(self) -> BlockInfo:
        doc = self._load()
        if "head_block" in doc:
            number = _int_field(doc, "head_block", self.path)
        elif "genesis_unix" in doc:
            genesis = _int_field(doc, "genesis_unix", self.path)
            number = max(0, int(time.time() - genesis) // BLOCK_TIME_SECONDS)
        else:
            raise ChainFileError(f"{self.path}: give either 'head_block' or 'genesis_unix'")
        return BlockInfo(number=number, hash=self._hash(doc, number))

    def block_hash(self, number: int) -> str:
        return self._hash(self._load(), number)

    def commitments(self, at_block: int) -> list[ChainCommitment]:
        doc = self._load()
        entries = doc.get("miners") or []
        if not isinstance(entries, list):
            raise ChainFileError(f"{self.path}: 'miners' must be a list")
        seen: dict[int, ChainCommitment] = {}
        for index, entry in enumerate(entries):
            commitment = _parse_entry(entry, index, self.path)
            if commitment.block <= at_block:
                # A later entry for the same uid is a newer commitment (or a re-registration).
                previous = seen.get(commitment.uid)
                if previous is None or commitment.block >= previous.block:
                    seen[commitment.uid] = commitment
        return sorted(seen.values(), key=lambda c: c.uid)

    def _load(self) -> dict[str, Any]:
        try:
            doc = yaml.safe_load(self.path.read_text())
        except FileNotFoundError:
            raise ChainFileError(f"chain file {self.path} does not exist (run `kinitro demo` to create one)") from None
        except yaml.YAMLError as exc:
            raise ChainFileError(f"chain file {self.path} is not valid YAML: {exc}") from None
        if not isinstance(doc, dict):
            raise ChainFileError(f"chain file {self.path} must be a mapping with 'miners' and a head")
        return doc

    @staticmethod
    def _hash(doc: dict[str, Any], number: int) -> str:
        name = str(doc.get("name", "file-chain"))
        return "0x" + hashlib.sha256(f"{name}:{number}".encode()).hexdigest()


def _int_field(doc: dict[str, Any], key: str, path: Path) -> int:
    value = doc[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise ChainFileError(f"{path}: '{key}' must be an integer, got {value!r}")
    return value


def _parse_entry(entry: Any, index: int, path: Path) -> ChainCommitment:
    where = f"{path}: miners[{index}]"
    if not isinstance(entry, dict):
        raise ChainFileError(f"{where} must be a mapping with uid, hotkey, commitment, block")
    missing = [key for key in ("uid", "hotkey", "commitment", "block") if key not in entry]
    if missing:
        raise ChainFileError(f"{where} lacks {', '.join(missing)}")
    for key in ("uid", "block"):
        _int_field(entry, key, path)
    # The commitment text stays raw: a malformed one is the miner's problem, recorded per cycle.
    return ChainCommitment(
        uid=entry["uid"], hotkey=str(entry["hotkey"]), raw=str(entry["commitment"]), block=entry["block"]
    )


def write_chain_file(path: Path, miners: list[ChainCommitment], *, name: str, head_block: int | None = None,
                     genesis_unix: int | None = None) -> None:
    """Write a chain file (used by the demo set-up and tests)."""
    doc: dict[str, Any] = {"name": name}
    if head_block is not None:
        doc["head_block"] = head_block
    if genesis_unix is not None:
        doc["genesis_unix"] = genesis_unix
    doc["miners"] = [
        {"uid": m.uid, "hotkey": m.hotkey, "commitment": m.raw, "block": m.block} for m in miners
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
