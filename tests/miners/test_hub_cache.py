"""The real huggingface_hub client reads a cache laid out by publish_to_cache, offline."""

import pytest

from kinitro_dagster.miners.hub import SnapshotFetchError, content_hash, fetch_snapshot, publish_to_cache


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _policy(path, text="print('hi')"):
    path.mkdir(parents=True)
    (path / "policy.py").write_text(text)
    (path / "weights").mkdir()
    (path / "weights" / "w.bin").write_bytes(b"\x00\x01")
    return path


def test_short_revision_is_resolved_to_the_full_commit(tmp_path):
    cache = tmp_path / "hub"
    revision = publish_to_cache(_policy(tmp_path / "src"), "alice/policy", cache_dir=cache)
    snapshot = fetch_snapshot("alice/policy", revision[:8], cache_dir=cache)
    assert snapshot.revision == revision and len(revision) == 40
    assert (snapshot.path / "weights" / "w.bin").read_bytes() == b"\x00\x01"
    assert snapshot.content_hash == content_hash(tmp_path / "src")


def test_same_files_under_another_repo_hash_the_same(tmp_path):
    cache = tmp_path / "hub"
    src = _policy(tmp_path / "src")
    a = fetch_snapshot("alice/policy", publish_to_cache(src, "alice/policy", cache_dir=cache), cache_dir=cache)
    b = fetch_snapshot("mallory/copy", publish_to_cache(src, "mallory/copy", cache_dir=cache), cache_dir=cache)
    other = _policy(tmp_path / "other", text="print('different')")
    c = fetch_snapshot("carol/p", publish_to_cache(other, "carol/p", cache_dir=cache), cache_dir=cache)
    assert a.content_hash == b.content_hash != c.content_hash


def test_unknown_revision_fails_with_a_reason(tmp_path):
    cache = tmp_path / "hub"
    publish_to_cache(_policy(tmp_path / "src"), "alice/policy", cache_dir=cache)
    with pytest.raises(SnapshotFetchError, match="not in the cache"):
        fetch_snapshot("alice/policy", "deadbeef", cache_dir=cache)
    with pytest.raises(SnapshotFetchError, match="cannot fetch"):
        fetch_snapshot("alice/policy", "d" * 40, cache_dir=cache)
