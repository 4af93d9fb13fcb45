"""The Warehouse store against real SQLite files and a real PostgreSQL database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from warehouse_factories import (
    T0,
    cycle_key,
    make_commitment,
    make_cycle,
    make_episodes,
    make_scores,
    make_weights,
)

from kinitro_dagster.warehouse import CycleNotFound, Warehouse
from kinitro_dagster.warehouse.records import (
    CommitmentStatus,
    CycleStatus,
    EpisodeRecord,
)

REACH, PUSH = "metaworld/reach-v3", "metaworld/push-v3"


def test_cycle_round_trip_returns_utc_aware_timestamps(warehouse: Warehouse) -> None:
    plus_two = timezone(timedelta(hours=2))
    cycle = make_cycle(100, opened_at=datetime(2025, 1, 15, 12, 0, tzinfo=plus_two))
    warehouse.upsert_cycle(cycle)

    stored = warehouse.get_cycle(cycle.cycle_key)

    assert stored is not None
    assert stored.opened_at == datetime(2025, 1, 15, 10, 0, tzinfo=UTC)
    assert stored.opened_at.utcoffset() == timedelta(0)
    assert stored.status is CycleStatus.RUNNING
    assert (stored.block, stored.block_hash, stored.n_envs) == (100, cycle.block_hash, 2)


def test_naive_datetime_is_rejected_with_a_hint(warehouse: Warehouse) -> None:
    with pytest.raises(Exception, match="timezone-aware"):
        warehouse.upsert_cycle(make_cycle(100, opened_at=datetime(2025, 1, 15, 10, 0)))


def test_upsert_cycle_overwrites_and_complete_cycle_finishes_it(warehouse: Warehouse) -> None:
    warehouse.upsert_cycle(make_cycle(100))
    warehouse.upsert_cycle(make_cycle(100, n_envs=8))
    done_at = T0 + timedelta(hours=1)

    warehouse.complete_cycle(cycle_key(100), CycleStatus.COMPLETED, done_at, n_miners=12)

    stored = warehouse.get_cycle(cycle_key(100))
    assert stored is not None
    assert (stored.status, stored.completed_at, stored.n_miners, stored.n_envs) == (
        CycleStatus.COMPLETED,
        done_at,
        12,
        8,
    )
    assert len(warehouse.list_cycles()) == 1


def test_completing_an_unknown_cycle_says_so(warehouse: Warehouse) -> None:
    with pytest.raises(CycleNotFound, match="0000000999"):
        warehouse.complete_cycle(cycle_key(999), CycleStatus.FAILED, T0, n_miners=0)


def test_latest_and_listed_cycles_order_by_block(warehouse: Warehouse) -> None:
    assert warehouse.latest_cycle() is None
    for block in (300, 100, 200):
        warehouse.upsert_cycle(make_cycle(block, status=CycleStatus.COMPLETED))
    warehouse.upsert_cycle(make_cycle(400))

    assert [c.block for c in warehouse.list_cycles()] == [400, 300, 200, 100]
    assert [c.block for c in warehouse.list_cycles(limit=2)] == [400, 300]
    assert warehouse.latest_cycle().block == 400  # type: ignore[union-attr]
    assert warehouse.latest_cycle(CycleStatus.COMPLETED).block == 300  # type: ignore[union-attr]
    assert warehouse.count_cycles() == {"completed": 3, "running": 1}


def test_commitments_are_replaced_per_cycle(warehouse: Warehouse) -> None:
    warehouse.upsert_cycle(make_cycle(100))
    warehouse.upsert_cycle(make_cycle(200))
    bad = make_commitment(
        3,
        status=CommitmentStatus.UNPARSEABLE,
        repo=None,
        revision=None,
        first_seen_block=None,
        content_hash=None,
        raw="garbage",
        reason="no ':' in commitment",
    )
    copy = make_commitment(4, status=CommitmentStatus.DUPLICATE, duplicate_of_uid=1, reason="copy of uid 1")
    warehouse.replace_commitments(cycle_key(100), [make_commitment(1), make_commitment(2), bad])
    warehouse.replace_commitments(cycle_key(200), [make_commitment(1)])

    warehouse.replace_commitments(cycle_key(100), [copy, make_commitment(1), bad])

    assert warehouse.commitments(cycle_key(100)) == [make_commitment(1), bad, copy]
    assert warehouse.commitments(cycle_key(200)) == [make_commitment(1)]
    assert warehouse.commitments(cycle_key(300)) == []
    assert warehouse.latest_cycle_with_commitments().block == 200  # type: ignore[union-attr]
    assert warehouse.unique_miners() == 1  # uid 4 is a duplicate, uid 3 unparseable


@pytest.mark.parametrize(
    "write",
    [
        lambda w: w.replace_commitments(cycle_key(7), [make_commitment(1)]),
        lambda w: w.replace_episodes(cycle_key(7), REACH, make_episodes([1], 1)),
        lambda w: w.replace_scores(cycle_key(7), *make_scores([1], [REACH])),
        lambda w: w.write_weights(make_weights(7)),
    ],
    ids=["commitments", "episodes", "scores", "weights"],
)
def test_writes_for_an_unrecorded_cycle_ask_for_upsert_cycle(
    warehouse: Warehouse, write: Callable[[Warehouse], None]
) -> None:
    with pytest.raises(CycleNotFound, match="upsert_cycle"):
        write(warehouse)


def test_rerunning_an_episode_partition_replaces_its_rows(warehouse: Warehouse) -> None:
    warehouse.upsert_cycle(make_cycle(100))
    first = make_episodes(range(4), 5)
    warehouse.replace_episodes(cycle_key(100), REACH, first)
    warehouse.replace_episodes(cycle_key(100), PUSH, make_episodes(range(4), 5, success_every=1))

    warehouse.replace_episodes(cycle_key(100), REACH, first)
    assert warehouse.episodes(cycle_key(100), REACH) == first
    assert warehouse.episode_counts(cycle_key(100)) == {PUSH: 20, REACH: 20}

    rerun = make_episodes(range(2), 3, success_every=1)
    warehouse.replace_episodes(cycle_key(100), REACH, rerun)
    assert warehouse.episodes(cycle_key(100), REACH) == rerun
    assert len(warehouse.episodes(cycle_key(100), PUSH)) == 20  # the other partition is untouched


def test_episodes_come_back_sorted_and_grouped_by_env(warehouse: Warehouse) -> None:
    warehouse.upsert_cycle(make_cycle(100))
    shuffled = list(reversed(make_episodes([2, 0, 1], 3)))
    failed = EpisodeRecord(
        uid=9,
        episode=0,
        seed=1,
        success=False,
        total_reward=0.0,
        steps=12,
        wall_seconds=0.5,
        error_kind="timeout",
        error="/act took 0.6 s",
    )
    warehouse.replace_episodes(cycle_key(100), REACH, [*shuffled, failed])
    warehouse.replace_episodes(cycle_key(100), PUSH, make_episodes([5], 2))

    everything = warehouse.episodes(cycle_key(100))
    by_env = warehouse.episodes_by_env(cycle_key(100))

    assert [(e.uid, e.episode) for e in by_env[REACH]] == [(u, i) for u in (0, 1, 2) for i in range(3)] + [(9, 0)]
    assert list(by_env) == [PUSH, REACH]
    assert everything == by_env[PUSH] + by_env[REACH]
    assert by_env[REACH][-1] == failed


def test_a_failed_replace_keeps_the_previous_rows(warehouse: Warehouse) -> None:
    warehouse.upsert_cycle(make_cycle(100))
    before = make_episodes(range(3), 2)
    warehouse.replace_episodes(cycle_key(100), REACH, before)
    duplicated = make_episodes([0], 2) * 2  # violates (cycle, env, uid, episode) uniqueness

    with pytest.raises(Exception):  # noqa: B017 (the driver's IntegrityError differs by dialect)
        warehouse.replace_episodes(cycle_key(100), REACH, duplicated)

    assert warehouse.episodes(cycle_key(100), REACH) == before


def test_full_size_partition_round_trips(warehouse: Warehouse) -> None:
    warehouse.upsert_cycle(make_cycle(100))
    rows = make_episodes(range(256), 50)

    warehouse.replace_episodes(cycle_key(100), REACH, rows)

    assert warehouse.episodes(cycle_key(100), REACH) == rows


def test_first_seen_never_moves_later(warehouse: Warehouse) -> None:
    assert warehouse.first_seen("a/policy", "abc") is None

    assert warehouse.record_first_seen("a/policy", "abc", 200, None) == 200
    assert warehouse.record_first_seen("a/policy", "abc", 350, "sha256:1") == 200
    assert warehouse.first_seen("a/policy", "abc") == (200, "sha256:1")  # the hash is filled in
    assert warehouse.record_first_seen("a/policy", "abc", 150, "sha256:other") == 150  # an earlier sighting
    assert warehouse.first_seen("a/policy", "abc") == (150, "sha256:1")  # a known hash is kept
    assert warehouse.record_first_seen("a/policy", "abc", 900, None) == 150
    assert warehouse.record_first_seen("a/policy", "def", 900, None) == 900


def test_first_seen_outlives_cycles(warehouse: Warehouse) -> None:
    warehouse.upsert_cycle(make_cycle(100))
    warehouse.record_first_seen("a/policy", "abc", 100, "h")
    warehouse.replace_commitments(cycle_key(100), [])
    warehouse.upsert_cycle(make_cycle(200))

    assert warehouse.record_first_seen("a/policy", "abc", 200, "h") == 100


def test_scores_round_trip_and_replace(warehouse: Warehouse) -> None:
    warehouse.upsert_cycle(make_cycle(100))
    miner, pareto = make_scores([0, 1, 2], [REACH, PUSH])
    warehouse.replace_scores(cycle_key(100), miner, pareto)
    assert warehouse.latest_scored_cycle().block == 100  # type: ignore[union-attr]

    fewer_miner, fewer_pareto = make_scores([1], [REACH])
    warehouse.replace_scores(cycle_key(100), fewer_miner, fewer_pareto)

    assert warehouse.miner_scores(cycle_key(100)) == fewer_miner
    assert warehouse.pareto_scores(cycle_key(100)) == fewer_pareto
    warehouse.replace_scores(cycle_key(100), miner, pareto)
    assert warehouse.miner_scores(cycle_key(100)) == sorted(miner, key=lambda s: (s.uid, s.env_id))
    assert warehouse.pareto_scores(cycle_key(100)) == pareto


def test_success_history_reaches_back_a_number_of_scored_cycles_oldest_first(warehouse: Warehouse) -> None:
    for block, uids in ((100, [0, 1]), (200, [0]), (300, [1, 2]), (400, [])):
        warehouse.upsert_cycle(make_cycle(block))
        if uids:
            miner, pareto = make_scores(uids, [REACH, PUSH])
            warehouse.replace_scores(cycle_key(block), miner, pareto)

    history = warehouse.success_history(2)  # cycle 400 has no scores: 200 and 300 are the last two scored
    assert [(b, u, e) for b, u, e, _ in history] == [
        (200, 0, PUSH), (200, 0, REACH), (300, 1, PUSH), (300, 1, REACH), (300, 2, PUSH), (300, 2, REACH)]
    assert history[0][3] == 0.1  # make_scores: (uid + 1) / 10
    assert {b for b, *_ in warehouse.success_history(5, up_to=cycle_key(200))} == {100, 200}


def test_weights_are_served_by_cycle_block_and_latest_block(warehouse: Warehouse) -> None:
    assert warehouse.latest_weights() is None
    assert warehouse.latest_weights_version() is None
    for block in (100, 300, 200):
        warehouse.upsert_cycle(make_cycle(block))
        warehouse.write_weights(make_weights(block, {block % 7: 1.0}))

    latest = warehouse.latest_weights()
    assert latest == make_weights(300, {300 % 7: 1.0})
    assert warehouse.latest_weights_version() == (cycle_key(300), latest.created_at)  # type: ignore[union-attr]
    assert warehouse.weights_at_block(200) == make_weights(200, {200 % 7: 1.0})
    assert warehouse.weights_at_block(250) is None
    assert warehouse.weights_for_cycle(cycle_key(100)).block == 100  # type: ignore[union-attr]
    assert warehouse.weights_durations() == [1800.0] * 3


def test_rewriting_a_cycles_weights_replaces_them(warehouse: Warehouse) -> None:
    warehouse.upsert_cycle(make_cycle(100))
    warehouse.write_weights(make_weights(100))
    redone = make_weights(100, {7: 0.5, 8: 0.5}, created_at=T0 + timedelta(days=1))

    warehouse.write_weights(redone)

    assert warehouse.weights_for_cycle(cycle_key(100)) == redone
    assert warehouse.latest_weights_version() == (cycle_key(100), redone.created_at)


def test_weights_for_a_block_owned_by_another_cycle_are_refused(warehouse: Warehouse) -> None:
    warehouse.upsert_cycle(make_cycle(100))
    warehouse.upsert_cycle(make_cycle(101))
    warehouse.write_weights(make_weights(100))

    with pytest.raises(ValueError, match="block 100 already belong"):
        warehouse.write_weights(make_weights(100, cycle_key=cycle_key(101)))


def test_weights_keep_float_precision_and_int_uids(warehouse: Warehouse) -> None:
    warehouse.upsert_cycle(make_cycle(100))
    third = 1 / 3
    warehouse.write_weights(make_weights(100, {0: third, 1: third, 255: 1 - 2 * third}))

    stored = warehouse.weights_for_cycle(cycle_key(100))

    assert stored is not None
    assert stored.weights == {0: third, 1: third, 255: 1 - 2 * third}


def test_chain_head_keeps_the_last_sighting(warehouse: Warehouse) -> None:
    assert warehouse.chain_head() is None
    warehouse.record_chain_head(500, T0)
    warehouse.record_chain_head(510, T0 + timedelta(minutes=2))

    assert warehouse.chain_head() == (510, T0 + timedelta(minutes=2))


def test_summary_reports_what_db_status_prints(warehouse: Warehouse) -> None:
    warehouse.upsert_cycle(make_cycle(100, status=CycleStatus.COMPLETED))
    warehouse.upsert_cycle(make_cycle(200))
    warehouse.replace_commitments(cycle_key(100), [make_commitment(1), make_commitment(2)])
    warehouse.write_weights(make_weights(100))

    summary = warehouse.summary()

    assert summary.schema_revision == summary.head_revision
    assert summary.total_cycles == 2
    assert summary.unique_miners == 2
    assert summary.latest_completed.block == 100  # type: ignore[union-attr]
    assert summary.running.block == 200  # type: ignore[union-attr]
    assert summary.latest_weights == make_weights(100)


def test_reset_drops_everything_and_migrate_starts_over(warehouse: Warehouse) -> None:
    warehouse.upsert_cycle(make_cycle(100))
    warehouse.record_first_seen("a/policy", "abc", 100, None)

    warehouse.reset()
    assert warehouse.schema_revision() is None
    warehouse.migrate()

    assert warehouse.latest_cycle() is None
    assert warehouse.first_seen("a/policy", "abc") is None


def test_sqlite_in_memory_url_works_for_quick_scripts() -> None:
    store = Warehouse("sqlite://")
    store.migrate()
    store.upsert_cycle(make_cycle(100))

    assert store.get_cycle(cycle_key(100)) is not None
