"""Alembic migrations: from an empty database to head, matching tables.py, from any cwd."""

from __future__ import annotations

import threading
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
