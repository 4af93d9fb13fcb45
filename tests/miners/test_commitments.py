import pytest

from kinitro_dagster.miners.commitments import MAX_COMMITMENT_BYTES, CommitmentError, parse_commitment

FULL = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("raw", "repo", "revision"),
    [
        ("alice/pick-policy:3f2a9c1b:dep-123", "alice/pick-policy", "3f2a9c1b"),  # Kinitro's form
        (f"alice/pick-policy:{FULL}", "alice/pick-policy", FULL),  # full revision
        ("alice/p.v2_x:3F2A9C1B:e:c2VjcmV0YmxvYg==", "alice/p.v2_x", "3f2a9c1b"),  # encrypted variant
        ("  bob/m:abcdef1  ", "bob/m", "abcdef1"),
        (b"bob/m:abcdef12:x", "bob/m", "abcdef12"),
    ],
)
def test_accepts_kinitro_commitment_forms(raw, repo, revision):
    parsed = parse_commitment(raw)
    assert (parsed.repo, parsed.revision) == (repo, revision)
    assert parsed.is_full_revision == (len(revision) == 40)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("alice/pick-policy", "no ':'"),
        ("alice:3f2a9c1b", "not a HuggingFace repo id"),
        ("alice/pick policy:3f2a9c1b", "not a HuggingFace repo id"),
        ("alice/../etc:3f2a9c1b", "not a HuggingFace repo id"),
        ("alice/p:zz", "not 7-40 hex"),
        ("alice/p:abc", "not 7-40 hex"),
        ("alice/p:" + "a" * 41, "not 7-40 hex"),
        ("a/" + "b" * 130 + ":3f2a9c1b", "128-byte limit"),
        (b"\xff\xfe/x:3f2a9c1b", "not UTF-8"),
    ],
)
def test_rejects_malformed_commitments_with_a_reason(raw, reason):
    with pytest.raises(CommitmentError, match=reason):
        parse_commitment(raw)


def test_limit_is_128_bytes_not_characters():
    repo = "a/" + "é" * 40  # 82 bytes of name in 42 characters
    assert MAX_COMMITMENT_BYTES == 128
    with pytest.raises(CommitmentError):
        parse_commitment(f"{repo}:3f2a9c1b" + "x" * 40)
