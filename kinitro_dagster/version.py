"""The code version a cycle records: the package version, plus the git commit when run from a checkout."""

from __future__ import annotations

import subprocess
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@cache
def code_version() -> str:
    try:
        text = version("kinitro-dagster")
    except PackageNotFoundError:
        text = "unknown"
    if not (REPO_ROOT / ".git").exists():
        return text  # an image: the package version is all there is
    try:
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return text
    return f"{text}+g{commit}" + (".dirty" if dirty else "")
