"""Parse the `repo:revision` text miners commit on chain (DESIGN §7).

Accepted forms (at most 128 bytes of UTF-8 as committed, printable once stripped of surrounding
whitespace):
- Kinitro's `"{hf_repo}:{rev8}:{deployment_id}"` — the deployment id is ignored (we deploy ourselves);
- Kinitro's encrypted variant, whose first two fields are the same repo and revision;
- `"{hf_repo}:{full_rev}"`.

A repo is a HuggingFace repo id the hub accepts (`owner/name`, no `--` or `..`, not ending in
`.git`); a revision is 7 to 40 hex digits (a short revision is resolved to the full commit at fetch
time). Every rejection is a `CommitmentError` whose message tells the miner what was expected;
tests/miners/test_commitments_fuzz.py feeds it arbitrary text and bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_COMMITMENT_BYTES = 128

# HuggingFace repo ids: "owner/name", each part alphanumerics plus - _ . (not leading/trailing), ≤ 96 chars.
_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_RE = re.compile(rf"{_REPO_PART}/{_REPO_PART}")
_REVISION_RE = re.compile(r"[0-9a-f]{7,40}")
EXPECTED = "expected 'owner/repo:revision[:deployment]' with a 7-40 digit hex revision"


class CommitmentError(ValueError):
    """A commitment that cannot be evaluated; the message is the reason recorded for the operator."""


@dataclass(frozen=True)
class ParsedCommitment:
    repo: str
    revision: str  # lower-case hex, possibly short

    @property
    def is_full_revision(self) -> bool:
        return len(self.revision) == 40

    def text(self) -> str:
        """The commitment in its plain form, which parses back to this one."""
        return f"{self.repo}:{self.revision}"


def parse_commitment(raw: str | bytes) -> ParsedCommitment:
    text = _decode(raw).strip()
    if not text:
        raise CommitmentError(f"commitment is empty; {EXPECTED}")
    if not text.isprintable():  # control characters, NUL, bidi overrides, line separators
        index, char = next((i, c) for i, c in enumerate(text) if not c.isprintable())
        raise CommitmentError(f"commitment holds a non-printable character U+{ord(char):04X} at position {index}; "
                              f"{EXPECTED}")  # fmt: skip
    fields = text.split(":")
    if len(fields) < 2:
        raise CommitmentError(f"no ':' separating repo and revision in {text!r}; {EXPECTED}")
    repo, revision = fields[0].strip(), fields[1].strip().lower()
    if not _REPO_RE.fullmatch(repo) or ".." in repo or "--" in repo or repo.endswith(".git"):
        raise CommitmentError(f"repo {repo!r} is not a HuggingFace repo id; {EXPECTED}")
    if not _REVISION_RE.fullmatch(revision):
        raise CommitmentError(f"revision {fields[1].strip()!r} is not 7-40 hex digits; {EXPECTED}")
    return ParsedCommitment(repo=repo, revision=revision)


def _decode(raw: str | bytes) -> str:
    """The committed text, checked against the byte limit as committed (before any stripping)."""
    try:
        size = len(raw) if isinstance(raw, bytes) else len(raw.encode())
    except UnicodeEncodeError as exc:  # a lone surrogate: no UTF-8 text was ever committed as that
        raise CommitmentError(f"commitment is not UTF-8 text ({exc.reason} at character {exc.start})") from None
    if size > MAX_COMMITMENT_BYTES:
        raise CommitmentError(f"commitment is {size} bytes, over the {MAX_COMMITMENT_BYTES}-byte limit")
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommitmentError(f"commitment is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def storable(raw: str | bytes) -> str:
    """The commitment as text any warehouse holds, for the record: invalid UTF-8 and lone surrogates
    backslash-escaped, NUL written as `\\x00` (PostgreSQL text cannot hold a NUL)."""
    if isinstance(raw, bytes):
        text = raw.decode("utf-8", "backslashreplace")
    else:
        text = raw.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00")
