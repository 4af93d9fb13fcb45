"""A chain or database that fails under an asset, or a full disk under what it writes, is a step
retry with a doubling wait; an error of the asset's own logic is not retried, and the retries end."""

from __future__ import annotations

import errno
from pathlib import Path

import dagster as dg
import pytest

from kinitro_dagster.defs import retries
from kinitro_dagster.defs.commitments import miner_commitments
from kinitro_dagster.miners import hub

CYCLE = "0000001200"  # the demo chain's head block


@pytest.fixture
def broken_chain(demo_state: dict) -> tuple[Path, bytes]:
    chain = Path(demo_state["chain"].chain_file)
    good = chain.read_bytes()
    chain.write_text("head_block: [unterminated\n")  # a malformed file: ChainFileError
    return chain, good


def _materialize(demo_state: dict, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions("cycles", [CYCLE])
    return dg.materialize([miner_commitments], partition_key=CYCLE, resources=demo_state, instance=instance,
                          raise_on_error=False)  # fmt: skip


def _retries(result: dg.ExecuteInProcessResult) -> list[dg.DagsterEvent]:
    return [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]


def test_an_unreadable_chain_is_retried_until_it_reads(demo_state, broken_chain, monkeypatch):
    monkeypatch.setattr(retries, "FIRST_WAIT_S", 0.4)
    chain, good = broken_chain
    waits: list[float] = []
    wait_s = retries.retry_wait_s

    def second_failure_heals_the_chain(retry_number: int) -> float:
        waits.append(wait_s(retry_number))
        if len(waits) == 2:
            chain.write_bytes(good)  # the chain answers again
        return waits[-1]

    monkeypatch.setattr(retries, "retry_wait_s", second_failure_heals_the_chain)
    with dg.instance_for_test() as instance:
        result = _materialize(demo_state, instance)

    assert result.success
    assert len(_retries(result)) == 2 and waits == [0.4, 0.8]  # doubling
    assert [r.uid for r in demo_state["warehouse"].store().commitments(CYCLE)] == [0, 1, 2, 3, 4]


def test_retries_end_with_the_chains_error(demo_state, broken_chain, monkeypatch):
    monkeypatch.setattr(retries, "FIRST_WAIT_S", 0.05)
    monkeypatch.setattr(retries, "MAX_RETRIES", 2)

    with dg.instance_for_test() as instance:
        result = _materialize(demo_state, instance)

    assert not result.success
    assert len(_retries(result)) == 2
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert failure.step_failure_data.error.cause.cls_name == "ChainFileError"  # Dagster wraps the step's error


def test_an_error_of_the_assets_own_logic_is_not_retried(demo_state, monkeypatch):
    def bug(*_args: object, **_kwargs: object) -> None:
        raise KeyError("a bug in resolution")

    monkeypatch.setattr("kinitro_dagster.defs.commitments.resolve_commitments", bug)

    with dg.instance_for_test() as instance:
        result = _materialize(demo_state, instance)

    assert not result.success and _retries(result) == []


def test_a_full_hub_cache_is_retried_and_the_miners_keep_their_commitments(demo_state, monkeypatch):
    """A snapshot download into a full hub cache (ENOSPC from huggingface_hub's write) fails the step
    with DiskFull, not the miner with `fetch_failed`; the retry resolves every miner."""
    monkeypatch.setattr(retries, "FIRST_WAIT_S", 0.05)
    download, calls = hub.snapshot_download, []

    def disk_full_the_first_time(*args: object, **kwargs: object) -> str:
        calls.append(args)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return download(*args, **kwargs)

    monkeypatch.setattr(hub, "snapshot_download", disk_full_the_first_time)
    with dg.instance_for_test() as instance:
        result = _materialize(demo_state, instance)

    assert result.success and len(_retries(result)) == 1
    warning = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert "DiskFull" in str(warning.event_specific_data.error.cause or warning.event_specific_data.error)
    statuses = [r.status.value for r in demo_state["warehouse"].store().commitments(CYCLE)]
    assert sorted(statuses) == ["duplicate", "ok", "ok", "ok", "unparseable"]  # the demo chain: no fetch_failed
