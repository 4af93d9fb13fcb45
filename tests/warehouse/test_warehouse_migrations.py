"""Alembic migrations: from an empty database to head, matching tables.py, from any cwd."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from kinitro_dagster.warehouse import Warehouse, WarehouseSchemaMissing
from kinitro_dagster.warehouse import tables as t
from kinitro_dagster.warehouse.schema import alembic_config, head_revision

TABLES = {
    "evaluation_cycles",
    "miner_commitments",
    "revision_first_seen",
    "episodes",
    "miner_scores",
    "pareto_scores",
    "weights",
    "chain_head",
}


def _table_names(store: Warehouse) -> set[str]:
    with store.engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names())


def test_migrate_from_empty_creates_every_table(database_url: str) -> None:
    store = Warehouse(database_url)
    assert store.schema_revision() is None

    store.migrate()

    assert _table_names(store) == TABLES | {"alembic_version"}
    assert store.schema_revision() == head_revision()
    store.check_schema()
    store.dispose()


def test_migrate_twice_is_a_no_op(database_url: str) -> None:
    store = Warehouse(database_url)
    store.migrate()
    store.migrate()

    assert store.schema_revision() == head_revision()
    store.dispose()


def test_migrations_produce_exactly_the_tables_in_tables_py(warehouse: Warehouse) -> None:
    with warehouse.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, t.metadata)

    assert differences == []


def test_indexes_serve_the_api_read_paths(warehouse: Warehouse) -> None:
    with warehouse.engine.connect() as conn:
        inspector = sa.inspect(conn)
        weights_indexes = {tuple(ix["column_names"]) for ix in inspector.get_indexes("weights")}
        weights_unique = {tuple(uq["column_names"]) for uq in inspector.get_unique_constraints("weights")}
        episodes_pk = inspector.get_pk_constraint("episodes")["constrained_columns"]

    assert ("created_at",) in weights_indexes
    assert ("block",) in weights_unique
    assert episodes_pk == ["cycle_key", "env_id", "uid", "episode"]


def test_migrate_works_from_any_working_directory(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no alembic.ini, no migrations folder here
    store = Warehouse(database_url)

    store.migrate()

    assert store.schema_revision() == head_revision()
    store.dispose()


def test_downgrade_to_base_and_back(warehouse: Warehouse) -> None:
    with warehouse.engine.begin() as conn:
        command.downgrade(alembic_config(connection=conn), "base")
    assert _table_names(warehouse) <= {"alembic_version"}

    warehouse.migrate()
    assert _table_names(warehouse) == TABLES | {"alembic_version"}


def test_concurrent_migrations_all_succeed(database_url: str) -> None:
    stores = [Warehouse(database_url) for _ in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def run(store: Warehouse) -> None:
        barrier.wait()
        try:
            store.migrate()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert stores[0].schema_revision() == head_revision()
    for store in stores:
        store.dispose()


def test_reading_an_unmigrated_database_says_to_run_db_init(database_url: str) -> None:
    store = Warehouse(database_url)

    with pytest.raises(WarehouseSchemaMissing, match="kinitro db init"):
        store.latest_weights()
    with pytest.raises(WarehouseSchemaMissing, match="kinitro db init"):
        store.check_schema()
    store.dispose()


# -- 0002: Kinitro's env ids ----------------------------------------------------------------------

OLD_BUTTON, NEW_BUTTON = "metaworld/button-press-topdown-v3", "metaworld/button-press-v3"
OLD_PEG, NEW_PEG = "metaworld/peg-insert-side-v3", "metaworld/peg-insert-v3"
REACH = "metaworld/reach-v3"

# The tables as revision 0001 made them (tables.py may have moved on by the time this runs).
_cycles_0001 = sa.table(
    "evaluation_cycles", sa.column("cycle_key"), sa.column("block"), sa.column("block_hash"),
    sa.column("opened_at", t.UTCDateTime), sa.column("status"),
)  # fmt: skip
_episodes_0001 = sa.table(
    "episodes", sa.column("cycle_key"), sa.column("env_id"), sa.column("uid"), sa.column("episode"),
    sa.column("seed"), sa.column("success"), sa.column("total_reward"), sa.column("steps"), sa.column("wall_seconds"),
)  # fmt: skip
_scores_0001 = sa.table(
    "miner_scores", sa.column("cycle_key"), sa.column("uid"), sa.column("env_id"), sa.column("success_rate"),
    sa.column("episodes_completed"), sa.column("episodes_failed"), sa.column("mean_reward"),
)  # fmt: skip
_pareto_0001 = sa.table(
    "pareto_scores", sa.column("cycle_key"), sa.column("uid"), sa.column("on_frontier"), sa.column("points"),
    sa.column("weight"), sa.column("thresholds", sa.JSON),
)  # fmt: skip


def _migrate_to(store: Warehouse, revision: str, *, down: bool = False) -> None:
    with store.engine.begin() as conn:
        (command.downgrade if down else command.upgrade)(alembic_config(connection=conn), revision)


def _write_rows_with_old_env_ids(store: Warehouse) -> None:
    with store.engine.begin() as conn:
        for block in (100, 200):
            conn.execute(_cycles_0001.insert().values(
                cycle_key=f"{block:010d}", block=block, block_hash=f"0x{block:064x}",
                opened_at=datetime(2025, 1, 15, tzinfo=UTC), status="completed",
            ))  # fmt: skip
            for env_id in (REACH, OLD_BUTTON, OLD_PEG):
                conn.execute(_episodes_0001.insert().values(
                    cycle_key=f"{block:010d}", env_id=env_id, uid=1, episode=0, seed=7, success=True,
                    total_reward=1.0, steps=40, wall_seconds=0.1,
                ))  # fmt: skip
                conn.execute(_scores_0001.insert().values(
                    cycle_key=f"{block:010d}", uid=1, env_id=env_id, success_rate=0.5, episodes_completed=2,
                    episodes_failed=0, mean_reward=1.0,
                ))  # fmt: skip
        pareto = [
            ("0000000100", 1, {REACH: 0.25, OLD_BUTTON: 0.5, OLD_PEG: 0.75}),
            ("0000000100", 2, {REACH: 0.125}),  # no renamed env: left as it is
            ("0000000200", 1, {OLD_PEG: 1.0, REACH: 0.0}),
        ]
        for cycle, uid, thresholds in pareto:
            conn.execute(_pareto_0001.insert().values(
                cycle_key=cycle, uid=uid, on_frontier=True, points=1.0, weight=0.5, thresholds=thresholds,
            ))  # fmt: skip


def _stored_env_ids(store: Warehouse) -> tuple[list, list, list]:
    e, s, p = _episodes_0001.c, _scores_0001.c, _pareto_0001.c
    with store.engine.connect() as conn:
        episodes = conn.execute(sa.select(e.cycle_key, e.env_id).order_by(e.cycle_key, e.env_id)).all()
        scores = conn.execute(sa.select(s.cycle_key, s.env_id).order_by(s.cycle_key, s.env_id)).all()
        pareto = conn.execute(sa.select(p.cycle_key, p.uid, p.thresholds).order_by(p.cycle_key, p.uid)).all()
    return [tuple(r) for r in episodes], [tuple(r) for r in scores], [tuple(r) for r in pareto]


def test_0002_rewrites_old_env_ids_to_kinitros_and_back(database_url: str) -> None:
    store = Warehouse(database_url)
    _migrate_to(store, "0001")
    _write_rows_with_old_env_ids(store)
    before = _stored_env_ids(store)

    _migrate_to(store, "0002")
    episodes, scores, pareto = _stored_env_ids(store)

    canonical = sorted([REACH, NEW_BUTTON, NEW_PEG])
    assert episodes == scores == [(cycle, env) for cycle in ("0000000100", "0000000200") for env in canonical]
    assert pareto == [
        ("0000000100", 1, {REACH: 0.25, NEW_BUTTON: 0.5, NEW_PEG: 0.75}),
        ("0000000100", 2, {REACH: 0.125}),
        ("0000000200", 1, {NEW_PEG: 1.0, REACH: 0.0}),
    ]

    _migrate_to(store, "0001", down=True)
    assert _stored_env_ids(store) == before
    store.dispose()


def test_0002_reads_back_through_the_warehouse_at_head(database_url: str) -> None:
    store = Warehouse(database_url)
    _migrate_to(store, "0001")
    _write_rows_with_old_env_ids(store)

    store.migrate()

    assert store.episode_counts("0000000100") == {REACH: 1, NEW_BUTTON: 1, NEW_PEG: 1}
    assert {s.env_id for s in store.miner_scores("0000000200")} == {REACH, NEW_BUTTON, NEW_PEG}
    assert store.pareto_scores("0000000100")[0].thresholds == {REACH: 0.25, NEW_BUTTON: 0.5, NEW_PEG: 0.75}
    store.dispose()


def test_0005_counts_scores_written_before_it_as_one_revision(database_url: str) -> None:
    store = Warehouse(database_url)
    _migrate_to(store, "0001")
    _write_rows_with_old_env_ids(store)
    with store.engine.begin() as conn:  # a cycle opened but not scored
        conn.execute(_cycles_0001.insert().values(
            cycle_key="0000000300", block=300, block_hash=f"0x{300:064x}",
            opened_at=datetime(2025, 1, 15, tzinfo=UTC), status="running",
        ))  # fmt: skip

    store.migrate()

    assert store.latest_scored_cycle().block == 200  # type: ignore[union-attr]
    assert store.scores_version("0000000100").revision == 1  # type: ignore[union-attr]
    assert store.scores_version("0000000300") is None
    store.dispose()
