"""Replay's pure parts: what counts as a different outcome, and a snapshot that is not the evaluated one."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kinitro_dagster.sim.replay import RecordedEpisode, ReplayError, check_snapshot, mismatches
from kinitro_dagster.warehouse.records import CommitmentRecord, CommitmentStatus, EpisodeRecord

EPISODE = EpisodeRecord(uid=1, episode=0, seed=7, success=True, total_reward=10.5, steps=40, wall_seconds=1.0)


def _recorded(content_hash: str | None) -> RecordedEpisode:
    commitment = CommitmentRecord(uid=1, hotkey="5H", raw="m/p:abc", commit_block=1, status=CommitmentStatus.OK,
                                  repo="m/p", revision="a" * 40, content_hash=content_hash)
    return RecordedEpisode("0000001200", "metaworld/reach-v3", None, commitment, EPISODE)  # type: ignore[arg-type]


def test_outcomes_differ_by_success_steps_reward_or_error_but_not_by_wall_time():
    assert mismatches(EPISODE, replace(EPISODE, wall_seconds=9.0, latency_p50_ms=3.0)) == []
    found = mismatches(EPISODE, replace(EPISODE, steps=41, total_reward=10.5 + 1e-12, error_kind="timeout"))
    assert [m.split(":")[0] for m in found] == ["steps", "total_reward", "error_kind"]


def test_a_snapshot_with_other_files_is_refused():
    check_snapshot(_recorded("h1"), "h1")
    check_snapshot(_recorded(None), "anything")  # nothing recorded to compare with
    with pytest.raises(ReplayError, match="not the same policy snapshot"):
        check_snapshot(_recorded("h1"), "h2")
