"""Sizes as operators write them (`4Gi`, `512m`, bytes): memory limits, tmpfs and runtime sizes.

A leaf module: the settings check sizes with it, and the deployments and runtimes apply them.
"""

from __future__ import annotations

import re

_MEMORY_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_memory(text: str | int) -> int:
    """Bytes in `4Gi`, `4G`, `4g`, `4GB`, `512Mi`, `1048576` (all binary units, as docker reads them)."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtKMGT]?)(?:i?[bB]?|i)?\s*", text)
    if not match:
        raise ValueError(f"memory {text!r} is not a size: use e.g. 4Gi, 512Mi or a number of bytes")
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2).lower()])
