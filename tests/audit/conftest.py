"""Audit fixtures: the warehouse record builders, and a signing key per test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The record builders live beside the warehouse tests; share them rather than copy them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "warehouse"))


@pytest.fixture
def key(tmp_path: Path):
    from kinitro_dagster.audit.signing import demo_hotkey

    return demo_hotkey(tmp_path / "wallets")
