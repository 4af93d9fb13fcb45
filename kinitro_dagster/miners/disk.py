"""A full disk under what a cycle writes (the hub cache, the miner runtime store, docker's storage).

That is this host's fault, never a miner's: recording it as the miner's `fetch_failed` or
`deployment_failed` would score an honest miner zero for the cycle. It is raised as `DiskFull`
instead, which fails the step; the assets' step retries (kinitro_dagster/defs/retries.py) run it
again with a doubling wait, so the cycle completes once space is freed.
"""

from __future__ import annotations

import errno

PRUNE_HINT = "`kinitro runtimes prune` removes runtimes no miner used lately"
# How uv, pip, huggingface_hub and dockerd word ENOSPC and EDQUOT in their output.
_MARKERS = ("no space left on device", "os error 28", "disk quota exceeded", "os error 122")


class DiskFull(RuntimeError):
    """No space left where the cycle writes; the message names the place, what was written, and the fix."""

    def __init__(self, where: str, doing: str, detail: str = "", *, fix: str | None = PRUNE_HINT) -> None:
        said = f": {detail}" if detail else ""
        how = f" ({fix})" if fix else ""
        super().__init__(f"disk full under {where} while {doing}{said}. This host's fault, not the miner's: "
                         f"free space there{how}")  # fmt: skip


def is_disk_full(error: BaseException) -> bool:
    """An OSError of this process with ENOSPC or EDQUOT (not a server's message that says so)."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def reports_disk_full(output: str) -> bool:
    """A tool's output (uv, pip in a docker build, dockerd) that reports ENOSPC or EDQUOT."""
    text = output.lower()
    return any(marker in text for marker in _MARKERS)
