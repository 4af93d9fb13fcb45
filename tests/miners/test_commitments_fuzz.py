"""Chain commitments as an adversary writes them: arbitrary text and bytes through the parser, then
whole chains of them through resolution, the warehouse and the `miner_commitments` asset.

The parser either accepts (and what it accepts round-trips, and is a repo id the hub accepts) or
rejects with a reason; nothing else. Resolution records every uid exactly once, with a status and
(when not evaluated) a reason, in a form both warehouses store; the asset's run does not fail.

The `slow` variants run the same properties with many more examples; set KINITRO_FUZZ_FIGURES to a
file path to have each append its figures (inputs, outcomes) to it as JSON.
"""

from __future__ import annotations

import collections
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from huggingface_hub.utils import validate_repo_id
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kinitro_dagster.defs.commitments import miner_commitments
from kinitro_dagster.defs.partitions import cycle_key, cycles
from kinitro_dagster.defs.resources import ChainResource, CycleConfig, Evaluator, HubResource, WarehouseResource
from kinitro_dagster.miners.chain import ChainCommitment, FileChain, write_chain_file
from kinitro_dagster.miners.commitments import (
    MAX_COMMITMENT_BYTES,
    CommitmentError,
    ParsedCommitment,
    parse_commitment,
    storable,
)
from kinitro_dagster.miners.hub import fetch_snapshot, publish_to_cache
from kinitro_dagster.miners.resolve import resolve_commitments
from kinitro_dagster.warehouse import Warehouse
from kinitro_dagster.warehouse.records import CommitmentRecord, CommitmentStatus, CycleRecord

HEX = "0123456789abcdef"
# Published to the test hub cache (module fixture `hub`): commitments naming these resolve; the copy
# has the same files as the original, so one of the two is a duplicate.
PUBLISHED = ("alice/pick-policy", "mallory/pick-copy", "bob/reach")

# -- commitment text: near-valid forms, hostile characters, sizes around the limit ---------------

HOSTILE_CHARS = st.sampled_from([
    "\x00", "\x01", "\x1b", "\x7f", "\x85", "\t", "\n", "\r", " ", "\u00a0", "\u3000", "\u2028", "\u200b", "\u200e",
    "\u200f", "\u202e", "\u2066", "\ufeff", "\ufffd", "\uffff", "：", "／", "а", "ｅ", "٣", "é", "😀", "\U000e0041",
])  # fmt: skip
SURROGATES = st.characters(categories=["Cs"])
ANY_CHAR = st.characters() | HOSTILE_CHARS | SURROGATES
REPO_CHARS = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def sometimes(draw: st.DrawFn, clean: object, hostile: st.SearchStrategy, tenths: int = 3) -> object:
    """`clean`, or (`tenths` times in ten) a value drawn from `hostile`; shrinks towards `clean`."""
    return draw(hostile) if draw(st.integers(0, 9)) >= 10 - tenths else clean


@st.composite
def repo_parts(draw: st.DrawFn) -> str:
    part = draw(st.text(REPO_CHARS, min_size=1, max_size=12))
    if not (part[0].isalnum() and part[-1].isalnum()):
        part = "a" + part + "z"
    return sometimes(draw, part, st.sampled_from([part + ".git", part + "--x", "-" + part, part + "-", "..", "a" * 97,
                                                  part + "\u200b", "а" + part, part + "/x"]))  # fmt: skip


@st.composite
def repos(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(st.sampled_from(PUBLISHED))
    owner, name = draw(repo_parts()), draw(repo_parts())
    return sometimes(draw, f"{owner}/{name}", st.sampled_from([owner, f"/{name}", f"{owner}/", f"{owner}/../{name}",
                                                               f"{owner} /{name}", f"{owner}\\{name}"]), 2)  # fmt: skip


@st.composite
def revisions(draw: st.DrawFn, real: str | None) -> str:
    if real is not None and draw(st.integers(0, 9)) < 7:  # the published commit, in full or short
        return real[: draw(st.sampled_from([40, 8, 7, 12, 39]))]
    digits = "".join(draw(st.lists(st.sampled_from(HEX), min_size=7, max_size=40)))
    wrong = st.sampled_from([digits.upper(), digits + "g", "0x" + digits, digits[:6], digits + "0" * 5, digits + "٣",
                             digits[:3] + " " + digits[3:], ""])  # fmt: skip
    return sometimes(draw, digits, wrong)


@st.composite
def near_valid(draw: st.DrawFn, published: dict[str, str]) -> str:
    """`repo:revision[:deployment]` with each part sometimes wrong, hostile characters inserted, and
    padding that sometimes puts the whole at or around the 128-byte limit."""
    repo = draw(repos())
    text = f"{repo}:{draw(revisions(published.get(repo)))}"
    deployments = st.sampled_from(["dep-123", "e:c2VjcmV0YmxvYg==", "", "x:y:z"]) | st.text(ANY_CHAR, max_size=20)
    text += sometimes(draw, "", deployments.map(lambda d: ":" + d), tenths=5)
    if draw(st.integers(0, 3)) == 0:  # pad towards the limit, in 1- to 4-byte characters
        target = draw(st.integers(MAX_COMMITMENT_BYTES - 4, MAX_COMMITMENT_BYTES + 4))
        pad = draw(st.sampled_from(["x", "é", "€", "😀"]))
        text += ":" if text.count(":") < 2 else ""
        while len((text + pad).encode("utf-8", "surrogatepass")) <= target:
            text += pad
    for _ in range(sometimes(draw, 0, st.integers(1, 2))):  # a hostile character somewhere
        index = draw(st.integers(0, len(text)))
        text = text[:index] + draw(HOSTILE_CHARS | SURROGATES) + text[index:]
    around = sometimes(draw, "", st.sampled_from([" ", "\t", "\n", "\u00a0", "\u3000", "\x00", "\ufeff"]))
    return around + text + around


@st.composite
def commitment_texts(draw: st.DrawFn, published: dict[str, str]) -> str:
    anything = st.text(ANY_CHAR, max_size=200) | st.text(ANY_CHAR, min_size=120, max_size=140)
    return sometimes(draw, draw(near_valid(published)), anything)


@st.composite
def commitment_bytes(draw: st.DrawFn, published: dict[str, str]) -> bytes:
    """Bytes as a chain reader may yield them: encoded text, with invalid UTF-8 spliced in, or noise."""
    data = draw(near_valid(published)).encode("utf-8", "surrogatepass")  # a surrogate: the invalid bytes spelling it
    for _ in range(sometimes(draw, 0, st.integers(1, 2))):
        index = draw(st.integers(0, len(data)))
        bad = draw(st.sampled_from([b"\xff", b"\xfe", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80",
                                    b"\xf8\x88\x80\x80\x80", b"\xc3", b"\x80", b"\x00"]))  # fmt: skip
        data = data[:index] + bad + data[index:]
    return sometimes(draw, data, st.binary(max_size=200), tenths=2)


# -- the parser -----------------------------------------------------------------------------------


@dataclass
class Figures:
    """What one fuzz test saw, for the figures in the issue."""

    inputs: int = 0  # commitments tried
    chains: int = 0  # whole chains resolved (or asset runs)
    crashes: int = 0  # exceptions other than CommitmentError, or failed runs
    outcomes: collections.Counter = field(default_factory=collections.Counter)


FIGURES: dict[str, Figures] = collections.defaultdict(Figures)


def reason_kind(reason: str) -> str:
    """A rejection's reason without its particulars: 'repo … is not a HuggingFace repo id'."""
    return re.sub(r"'[^']*'|\"[^\"]*\"|U\+[0-9A-F]+|\d+", "…", reason.split(";")[0])


def check_parse(raw: str | bytes, figures: Figures) -> ParsedCommitment | None:
    figures.inputs += 1
    try:
        parsed = parse_commitment(raw)
    except CommitmentError as error:
        reason = str(error)
        assert reason and "\x00" not in reason
        reason.encode("utf-8")  # storable as the record's reason
        figures.outcomes["rejected: " + reason_kind(reason)] += 1
        return None
    except BaseException:
        figures.crashes += 1
        raise
    figures.outcomes["accepted"] += 1
    # What is accepted round-trips, in the plain form and in Kinitro's, and names a repo the hub takes.
    assert parse_commitment(parsed.text()) == parsed
    assert parse_commitment(parsed.text() + ":dep-123") == parsed
    validate_repo_id(parsed.repo)
    assert 7 <= len(parsed.revision) <= 40 and set(parsed.revision) <= set(HEX)
    text = raw.decode() if isinstance(raw, bytes) else raw
    assert len(text.encode()) <= MAX_COMMITMENT_BYTES
    fields = text.strip().split(":")  # each of repo and revision may have spaces around it
    assert fields[0].strip() == parsed.repo and fields[1].strip().lower() == parsed.revision
    return parsed


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A hub cache with PUBLISHED in it (the first two with the same files); (cache dir, repo -> revision)."""
    root = tmp_path_factory.mktemp("hub")
    policy, other = root / "policy", root / "other"
    for directory, text in ((policy, "class RobotPolicy: ..."), (other, "class RobotPolicy:\n    pass\n")):
        directory.mkdir()
        (directory / "policy.py").write_text(text)
    cache = root / "cache"
    sources = (policy, policy, other)
    revisions = {
        repo: publish_to_cache(src, repo, cache_dir=cache) for repo, src in zip(PUBLISHED, sources, strict=True)
    }
    return cache, revisions


def parse_test(name: str, max_examples: int):
    @settings(max_examples=max_examples, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def test(hub: tuple[Path, dict[str, str]], data: st.DataObject) -> None:
        published = hub[1]
        raw = data.draw(commitment_texts(published) | commitment_bytes(published), label="raw")
        check_parse(raw, FIGURES[name])

    return test


# -- whole chains: resolution and the warehouse ------------------------------------------------------

HEAD = 10_000


@st.composite
def chains(draw: st.DrawFn, published: dict[str, str], *, as_bytes: bool) -> list[ChainCommitment]:
    """Registered miners (unique uids) with fuzzed commitments; bytes as well as text if `as_bytes`."""
    uids = draw(st.lists(st.integers(0, 65535), min_size=1, max_size=24, unique=True))
    hostile = commitment_texts(published) | commitment_bytes(published) if as_bytes else commitment_texts(published)
    raws = st.one_of(near_valid(published), near_valid(published), hostile)  # a chain of mostly near-valid ones
    return [ChainCommitment(uid=uid, hotkey=f"5H{uid:06d}", raw=draw(raws), block=draw(st.integers(0, HEAD)))
            for uid in uids]  # fmt: skip


_blocks = iter(range(10**6, 10**9, 100))  # one cycle per example


def check_records(commitments: list[ChainCommitment], records: list[CommitmentRecord], figures: Figures) -> None:
    """Every uid once, with a status and, when not evaluated, a reason; text any warehouse stores."""
    assert sorted(r.uid for r in records) == sorted(c.uid for c in commitments)
    by_uid = {r.uid: r for r in records}
    for commitment in commitments:
        record = by_uid[commitment.uid]
        figures.inputs += 1
        figures.outcomes[record.status.value] += 1
        assert record.raw == storable(commitment.raw)
        assert "\x00" not in record.raw and "\x00" not in (record.reason or "")
        record.raw.encode("utf-8"), (record.reason or "").encode("utf-8")
        if record.status is CommitmentStatus.OK:
            assert record.repo and record.revision and len(record.revision) == 40 and record.content_hash
        else:
            assert record.reason
        if record.status is CommitmentStatus.DUPLICATE:
            assert by_uid[record.duplicate_of_uid].status is CommitmentStatus.OK


def stored_round_trip(store: Warehouse, records: list[CommitmentRecord]) -> None:
    block = next(_blocks)
    cycle = cycle_key(block)
    store.upsert_cycle(CycleRecord(cycle_key=cycle, block=block, block_hash="0x00", opened_at=datetime.now(UTC)))
    store.replace_commitments(cycle, records)
    assert store.commitments(cycle) == sorted(records, key=lambda r: r.uid)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated warehouse for the module: a SQLite file, then a schema in the session's PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('warehouse') / 'warehouse.db'}"
        WarehouseResource(database_url=url).store()
        yield url
        return
    with request.getfixturevalue("postgres_schema")() as url:
        store = WarehouseResource(database_url=url).store()
        try:
            yield url
        finally:
            store.dispose()


def resolve_test(name: str, max_examples: int):
    @settings(max_examples=max_examples, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data(), via_file=st.booleans())
    def test(hub: tuple[Path, dict[str, str]], warehouse_url: str, data: st.DataObject, via_file: bool) -> None:
        cache, published = hub
        figures = FIGURES[f"{name} [{warehouse_url.split(':')[0]}]"]
        commitments = data.draw(chains(published, as_bytes=not via_file), label="chain")
        if via_file:  # the file chain the demo and the tests use: what is written is read back as it was
            with tempfile.TemporaryDirectory() as directory:
                path = Path(directory) / "chain.yaml"
                write_chain_file(path, commitments, name="fuzz", head_block=HEAD)
                read = FileChain(path).commitments(at_block=HEAD)
            assert read == sorted(commitments, key=lambda c: c.uid)
            commitments = read
        store = WarehouseResource(database_url=warehouse_url).store()
        figures.chains += 1
        try:
            records = resolve_commitments(
                commitments, fetch=lambda repo, revision: fetch_snapshot(repo, revision, cache_dir=cache),
                record_first_seen=store.record_first_seen,
            )  # fmt: skip
            check_records(commitments, records, figures)
            stored_round_trip(store, records)
        except AssertionError:
            raise
        except BaseException:
            figures.crashes += 1
            raise

    return test


# -- the asset ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def asset_resources(warehouse_url: str, cache: Path, chain_file: Path) -> dict[str, dg.ConfigurableResource]:
    return {
        "warehouse": WarehouseResource(database_url=warehouse_url),
        "chain": ChainResource(kind="file", chain_file=str(chain_file)),
        "hub": HubResource(cache_dir=str(cache)),
        "cycle_config": CycleConfig(),
        "evaluator": Evaluator(),
    }


def asset_test(name: str, max_examples: int):
    @settings(max_examples=max_examples, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def test(hub: tuple[Path, dict[str, str]], warehouse_url: str, instance: dg.DagsterInstance,
             data: st.DataObject) -> None:  # fmt: skip
        cache, published = hub
        figures = FIGURES[f"{name} [{warehouse_url.split(':')[0]}]"]
        commitments = data.draw(chains(published, as_bytes=False), label="chain")
        block = next(_blocks)
        cycle = cycle_key(block)
        instance.add_dynamic_partitions(cycles.name, [cycle])
        with tempfile.TemporaryDirectory() as directory:
            chain_file = Path(directory) / "chain.yaml"
            write_chain_file(chain_file, commitments, name="fuzz", head_block=block)
            resources = asset_resources(warehouse_url, cache, chain_file)
            figures.chains += 1
            result = dg.materialize([miner_commitments], resources=resources, partition_key=cycle, instance=instance,
                                    raise_on_error=False)  # fmt: skip
        if not result.success:
            figures.crashes += 1
        assert result.success, [str(e.event_specific_data) for e in result.all_events if e.is_failure]
        records = WarehouseResource(database_url=warehouse_url).store().commitments(cycle)
        check_records(commitments, records, figures)
        metadata = result.asset_materializations_for_node("miner_commitments")[0].metadata
        assert metadata["miners"].value == len(commitments)

    return test


test_parser_takes_arbitrary_text_and_bytes = parse_test("parse_commitment", 300)
test_resolution_records_every_uid_of_a_fuzzed_chain = resolve_test("resolve_commitments + warehouse", 25)
test_miner_commitments_asset_survives_a_fuzzed_chain = asset_test("miner_commitments asset", 4)

test_parser_takes_many_arbitrary_texts_and_bytes = pytest.mark.slow(parse_test("parse_commitment", 10_000))
test_resolution_records_every_uid_of_many_fuzzed_chains = pytest.mark.slow(
    resolve_test("resolve_commitments + warehouse", 500)
)
test_miner_commitments_asset_survives_many_fuzzed_chains = pytest.mark.slow(asset_test("miner_commitments asset", 40))


# -- found by the fuzzing ---------------------------------------------------------------------------

HOSTILE_CHAIN = [
    ChainCommitment(uid=1, hotkey="5H1", raw="alice/p:3f2a9c1b:\x00", block=5),  # NUL: PostgreSQL text refuses it
    ChainCommitment(uid=2, hotkey="5H2", raw=b"\xff\xfe/x:3f2a9c1b", block=6),  # bytes, and not UTF-8
    ChainCommitment(uid=3, hotkey="5H3", raw="\ud800alice/p:3f2a9c1b", block=7),  # a lone surrogate
    ChainCommitment(uid=4, hotkey="5H4", raw=b"bob/reach:abcdef12", block=8),  # bytes, valid
]


def test_commitments_the_warehouse_cannot_hold_as_given_are_recorded_escaped(hub, warehouse_url):
    # Recorded raw, these failed the whole cycle's write on PostgreSQL (NUL, bytes as bytea) or on both
    # warehouses (a surrogate cannot be encoded), so that one miner's commitment blocked every miner's.
    cache, _ = hub
    store = WarehouseResource(database_url=warehouse_url).store()
    records = resolve_commitments(HOSTILE_CHAIN, fetch=lambda repo, rev: fetch_snapshot(repo, rev, cache_dir=cache),
                                  record_first_seen=store.record_first_seen)  # fmt: skip
    stored_round_trip(store, records)
    by_uid = {r.uid: r for r in records}
    assert by_uid[1].raw == "alice/p:3f2a9c1b:\\x00" and "U+0000" in by_uid[1].reason
    assert by_uid[2].raw == "\\xff\\xfe/x:3f2a9c1b" and "not UTF-8" in by_uid[2].reason
    assert by_uid[3].raw == "\\ud800alice/p:3f2a9c1b" and "not UTF-8" in by_uid[3].reason
    assert by_uid[4].raw == "bob/reach:abcdef12"
    assert by_uid[4].status is CommitmentStatus.FETCH_FAILED  # no such revision in the cache
    assert {r.status for r in records[:3]} == {CommitmentStatus.UNPARSEABLE}


def test_asset_run_survives_a_nul_in_a_commitment(hub, warehouse_url, instance):
    cache, published = hub
    block = next(_blocks)
    cycle = cycle_key(block)
    instance.add_dynamic_partitions(cycles.name, [cycle])
    good = f"alice/pick-policy:{published['alice/pick-policy']}"
    commitments = [ChainCommitment(uid=0, hotkey="5H0", raw=good, block=1),
                   ChainCommitment(uid=1, hotkey="5H1", raw="alice/p:3f2a9c1b:\x00", block=2)]  # fmt: skip
    with tempfile.TemporaryDirectory() as directory:
        chain_file = Path(directory) / "chain.yaml"
        write_chain_file(chain_file, commitments, name="fuzz", head_block=block)
        resources = asset_resources(warehouse_url, cache, chain_file)
        assert dg.materialize([miner_commitments], resources=resources, partition_key=cycle, instance=instance).success
    records = WarehouseResource(database_url=warehouse_url).store().commitments(cycle)
    assert [(r.uid, r.status) for r in records] == [(0, CommitmentStatus.OK), (1, CommitmentStatus.UNPARSEABLE)]
