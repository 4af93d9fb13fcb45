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


# -- found by tests/miners/test_commitments_fuzz.py ------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("alice/p:3f2a9c1b\ud800", "not UTF-8"),  # a lone surrogate raised UnicodeEncodeError
        ("a--b/policy:3f2a9c1b", "not a HuggingFace repo id"),  # the hub refuses "--" (and the cache name is ambiguous)
        ("alice/policy.git:3f2a9c1b", "not a HuggingFace repo id"),  # ... and a name ending in ".git"
        ("alice/p:3f2a9c1b:\x00", r"non-printable character U\+0000"),  # a NUL the warehouse cannot store
        ("alice/p:3f2a9c1b:dep\u202e", r"non-printable character U\+202E"),  # a bidi override that hides text
        ("alice/p:3f2a9c1b:a\u2028b", r"non-printable character U\+2028"),
        ("alice/p:3f2a9c1b\x1b[2J", r"non-printable character U\+001B"),
    ],
)
def test_rejects_what_the_fuzzer_found_with_a_reason(raw, reason):
    with pytest.raises(CommitmentError, match=reason):
        parse_commitment(raw)


@pytest.mark.parametrize("raw", [f"alice/p:{FULL}:" + "x" * 80, " " * 3 + f"alice/p:{FULL}:" + "x" * 78])
def test_limit_counts_the_commitment_as_committed_text_or_bytes(raw):
    # 129+ bytes as committed: text padded with whitespace was stripped before the check, bytes were not.
    assert len(raw.encode()) > MAX_COMMITMENT_BYTES
    for form in (raw, raw.encode()):
        with pytest.raises(CommitmentError, match="128-byte limit"):
            parse_commitment(form)


def test_exactly_128_bytes_is_accepted():
    raw = f"alice/p:{FULL}:" + "é" * 39  # 49 + 78 + 1 pad byte
    raw += "x" * (MAX_COMMITMENT_BYTES - len(raw.encode()))
    assert len(raw.encode()) == MAX_COMMITMENT_BYTES
    assert parse_commitment(raw).revision == FULL


def test_accepted_commitments_print_back_to_themselves():
    parsed = parse_commitment("  Alice/P.v2:3F2A9C1B:e:c2VjcmV0  ")
    assert parsed.text() == "Alice/P.v2:3f2a9c1b"
    assert parse_commitment(parsed.text()) == parsed
