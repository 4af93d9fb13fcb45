import pytest

from kinitro_dagster.miners.chain import ChainCommitment
from kinitro_dagster.miners.hub import fetch_snapshot, publish_to_cache
from kinitro_dagster.miners.resolve import resolve_commitments
from kinitro_dagster.warehouse.records import CommitmentStatus


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_statuses_and_copy_detection(tmp_path):
    cache = tmp_path / "hub"
    src = tmp_path / "policy"
    src.mkdir()
    (src / "policy.py").write_text("class RobotPolicy: ...")
    rev = publish_to_cache(src, "alice/policy", cache_dir=cache)
    copy_rev = publish_to_cache(src, "mallory/copy", cache_dir=cache)
    first_seen: dict[tuple[str, str], int] = {}

    def record_first_seen(repo, revision, block, content_hash):
        return first_seen.setdefault((repo, revision), block)

    # mallory's copy was committed to the chain first, but its (repo, revision) is newer than alice's.
    first_seen[("alice/policy", rev)] = 5
    commitments = [
        ChainCommitment(uid=7, hotkey="5M", raw=f"mallory/copy:{copy_rev[:8]}", block=20),
        ChainCommitment(uid=3, hotkey="5A", raw=f"alice/policy:{rev[:8]}:dep", block=30),
        ChainCommitment(uid=9, hotkey="5T", raw="not a commitment", block=31),
        ChainCommitment(uid=11, hotkey="5G", raw="ghost/repo:abcdef12", block=32),
    ]
    records = {r.uid: r for r in resolve_commitments(
        commitments, fetch=lambda repo, revision: fetch_snapshot(repo, revision, cache_dir=cache),
        record_first_seen=record_first_seen)}

    assert records[3].status is CommitmentStatus.OK
    assert records[3].revision == rev and records[3].first_seen_block == 5
    assert records[7].status is CommitmentStatus.DUPLICATE and records[7].duplicate_of_uid == 3
    assert "same files as uid 3" in records[7].reason
    assert records[9].status is CommitmentStatus.UNPARSEABLE and "no ':'" in records[9].reason
    assert records[11].status is CommitmentStatus.FETCH_FAILED and "ghost/repo" in records[11].reason
