import time

import pytest

from kinitro_dagster.miners.chain import (
    BLOCK_TIME_SECONDS,
    ChainCommitment,
    ChainFileError,
    FileChain,
    write_chain_file,
)


def _chain(tmp_path, **head):
    path = tmp_path / "chain.yaml"
    miners = [
        ChainCommitment(uid=0, hotkey="5A", raw="a/p:1111111", block=10),
        ChainCommitment(uid=1, hotkey="5B", raw="b/p:2222222", block=50),
        ChainCommitment(uid=0, hotkey="5A", raw="a/p:3333333", block=40),  # uid 0 re-commits later
    ]
    write_chain_file(path, miners, name="t", **head)
    return FileChain(path)


def test_commitments_are_those_made_by_the_block_latest_per_uid(tmp_path):
    chain = _chain(tmp_path, head_block=100)
    assert [(c.uid, c.raw) for c in chain.commitments(at_block=30)] == [(0, "a/p:1111111")]
    assert [(c.uid, c.raw) for c in chain.commitments(at_block=100)] == [(0, "a/p:3333333"), (1, "b/p:2222222")]


def test_head_and_hashes_are_deterministic(tmp_path):
    chain = _chain(tmp_path, head_block=100)
    head = chain.head()
    assert head.number == 100
    assert head.hash == chain.block_hash(100) != chain.block_hash(101)
    assert head.hash.startswith("0x") and len(head.hash) == 66


def test_head_advances_with_time_from_genesis(tmp_path):
    chain = _chain(tmp_path, genesis_unix=int(time.time()) - 100 * BLOCK_TIME_SECONDS)
    assert chain.head().number in (100, 101)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("miners: []", "head_block"),
        ("head_block: 5\nminers: [{uid: 0}]", "lacks hotkey, commitment, block"),
        ("head_block: x\nminers: []", "must be an integer"),
        ("[1, 2", "not valid YAML"),
    ],
)
def test_malformed_chain_file_names_the_problem(tmp_path, text, message):
    path = tmp_path / "chain.yaml"
    path.write_text(text)
    with pytest.raises(ChainFileError, match=message):
        chain = FileChain(path)
        chain.head()
        chain.commitments(at_block=10)


def test_missing_chain_file_says_how_to_make_one(tmp_path):
    with pytest.raises(ChainFileError, match="kinitro demo"):
        FileChain(tmp_path / "nope.yaml").head()
