"""Parallel Dagster runs share one warehouse: writers must queue, never fail or duplicate."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from warehouse_factories import cycle_key, make_cycle, make_episodes

from kinitro_dagster.warehouse import Warehouse

ENV_IDS = [f"metaworld/env{i}-v3" for i in range(6)]


def _run_together(jobs: list[Callable[[], object]]) -> tuple[list[object], list[BaseException]]:
    barrier = threading.Barrier(len(jobs))
    results: list[object] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = jobs[i]()
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results, errors


def test_concurrent_record_first_seen_keeps_the_earliest_block(database_url: str) -> None:
    # One Warehouse per "run process": separate engines, separate connections.
    stores = [Warehouse(database_url) for _ in range(6)]
    stores[0].migrate()
    blocks = [500, 300, 700, 300, 900, 400]

    for _ in range(5):
        jobs = [
            lambda s=s, b=b: s.record_first_seen("a/policy", "abc", b, f"h{b}")
            for s, b in zip(stores, blocks, strict=True)
        ]
        results, errors = _run_together(jobs)
        assert errors == []
        assert all(r <= b for r, b in zip(results, blocks, strict=True))  # type: ignore[operator]

    assert stores[0].first_seen("a/policy", "abc")[0] == 300  # type: ignore[index]
    for store in stores:
        store.dispose()


def test_concurrent_first_sighting_returns_one_agreed_block(database_url: str) -> None:
    stores = [Warehouse(database_url) for _ in range(6)]
    stores[0].migrate()

    results, errors = _run_together([lambda s=s: s.record_first_seen("b/policy", "def", 1000, "h") for s in stores])

    assert errors == []
    assert results == [1000] * len(stores)
    for store in stores:
        store.dispose()


def test_parallel_episode_partitions_all_land(database_url: str) -> None:
    stores = [Warehouse(database_url) for _ in ENV_IDS]
    stores[0].migrate()
    stores[0].upsert_cycle(make_cycle(100))
    rows = make_episodes(range(32), 10)

    # Each partition written twice at once (a retried run racing the original): no duplicates.
    jobs = [lambda s=s, e=e: s.replace_episodes(cycle_key(100), e, rows) for s, e in zip(stores, ENV_IDS, strict=True)]
    _, errors = _run_together(jobs + jobs)

    assert errors == []
    assert stores[0].episode_counts(cycle_key(100)) == {e: len(rows) for e in ENV_IDS}
    for store in stores:
        store.dispose()


def _session_id(store: Warehouse) -> object:
    """Which database session a checkout gets: PostgreSQL's backend pid; SQLite: the handle."""
    with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            return conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        return id(conn.connection.dbapi_connection)


def _child(store: Warehouse, results: Any) -> None:
    store.record_first_seen("forked/policy", "abc", 42, "h")
    results.put(_session_id(store))


def test_a_forked_child_gets_its_own_connections(warehouse: Warehouse) -> None:
    import multiprocessing

    context = multiprocessing.get_context("fork")
    warehouse.upsert_cycle(make_cycle(100))
    parent_session = _session_id(warehouse)  # the parent's pool now holds this live connection
    results = context.Queue()
    child = context.Process(target=_child, args=(warehouse, results))
    child.start()
    child_session = results.get(timeout=60)
    child.join(timeout=60)

    assert child.exitcode == 0
    if warehouse.dialect == "postgresql":
        assert child_session != parent_session  # sharing one socket would interleave both sessions
    assert warehouse.first_seen("forked/policy", "abc") == (42, "h")
    assert _session_id(warehouse) == parent_session  # the parent's connection survived the child
