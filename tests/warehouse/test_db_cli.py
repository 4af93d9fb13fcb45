"""`kinitro db ...`: create, init, status, reset, and one-line errors an operator can act on."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from warehouse_factories import cycle_key, make_commitment, make_cycle, make_weights

from kinitro_dagster.cli import main
from kinitro_dagster.warehouse import Warehouse
from kinitro_dagster.warehouse.records import CycleStatus
from kinitro_dagster.warehouse.schema import head_revision


def _kinitro(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_create_then_init_then_status_on_a_fresh_database(database_url: str) -> None:
    created = _kinitro("db", "create", "--database-url", database_url)
    init = _kinitro("db", "init", "--database-url", database_url)
    again = _kinitro("db", "init", "--database-url", database_url)
    status = _kinitro("db", "status", "--database-url", database_url)

    head = head_revision()
    assert created.exit_code == 0, created.output
    assert init.exit_code == 0 and f"migrated empty database -> revision {head} (head)" in init.output
    assert again.exit_code == 0 and f"already at revision {head}" in again.output
    assert status.exit_code == 0, status.output
    assert f"schema:           {head} (head)" in status.output
    assert "cycles:           0\n" in status.output
    assert "latest weights:   none published" in status.output


def test_status_shows_cycles_miners_and_latest_weights(warehouse: Warehouse, database_url: str) -> None:
    warehouse.upsert_cycle(make_cycle(100))
    warehouse.complete_cycle(cycle_key(100), CycleStatus.COMPLETED, make_cycle(100).opened_at.replace(hour=11), 3)
    warehouse.replace_commitments(cycle_key(100), [make_commitment(u) for u in (0, 1, 5)])
    warehouse.write_weights(make_weights(100))
    warehouse.upsert_cycle(make_cycle(200))

    result = _kinitro("db", "status", "--database-url", database_url)

    assert result.exit_code == 0, result.output
    out = result.output
    assert "cycles:           2 (completed 1, running 1)" in out
    assert "unique miners:    3" in out
    assert "latest completed: cycle 0000000100 (block 100)" in out and "3 miners, 2 envs" in out
    assert "running:          cycle 0000000200 (block 200)" in out
    assert "latest weights:   cycle 0000000100 (block 100)" in out
    assert "top: uid 5 0.6000, uid 1 0.2500, uid 0 0.1500" in out


def test_reset_requires_force_and_then_empties_the_warehouse(warehouse: Warehouse, database_url: str) -> None:
    warehouse.upsert_cycle(make_cycle(100))

    refused = _kinitro("db", "reset", "--database-url", database_url)
    assert warehouse.latest_cycle() is not None
    done = _kinitro("db", "reset", "--database-url", database_url, "--force")

    _assert_one_line_error(refused, "without --force")
    assert done.exit_code == 0 and "all warehouse data dropped" in done.output
    assert warehouse.latest_cycle() is None  # empty, and the schema is back at head
    assert warehouse.schema_revision() == head_revision()


def test_status_of_an_uninitialized_database_says_to_run_init(database_url: str) -> None:
    Warehouse(database_url).ping()  # exists, no tables

    _assert_one_line_error(_kinitro("db", "status", "--database-url", database_url), "kinitro db init")


def test_status_never_creates_a_missing_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "warehouse.db"

    _assert_one_line_error(_kinitro("db", "status", "--database-url", f"sqlite:///{path}"), "no SQLite warehouse")
    assert not path.parent.exists()


def test_database_url_defaults_to_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'from-env.db'}"
    monkeypatch.setenv("KINITRO_DATABASE_URL", url)

    result = _kinitro("db", "init")

    assert result.exit_code == 0, result.output
    assert "from-env.db" in result.output
    assert (tmp_path / "from-env.db").exists()


@pytest.mark.parametrize(
    ("url", "fragments"),
    [
        ("not a url", ["not a valid URL", "postgresql://user:password@host:port/dbname"]),
        ("mysql://u@db/kinitro", ["supports SQLite and PostgreSQL"]),
        ("postgresql://postgres@127.0.0.1:1/kinitro", ["cannot reach PostgreSQL at 127.0.0.1:1", "server is running"]),
    ],
)
@pytest.mark.parametrize("command", ["create", "init", "status"])
def test_bad_or_unreachable_databases_give_one_line_errors(command: str, url: str, fragments: list[str]) -> None:
    _assert_one_line_error(_kinitro("db", command, "--database-url", url), *fragments)


def test_password_is_not_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    result = _kinitro("db", "status", "--database-url", "postgresql://kinitro:hunter2@127.0.0.1:1/kinitro")

    _assert_one_line_error(result)
    assert "hunter2" not in result.output


@pytest.mark.postgres
def test_create_makes_a_missing_postgres_database(postgres_admin_url: str) -> None:
    from sqlalchemy import make_url

    name = f"kinitro_cli_{uuid.uuid4().hex[:10]}"
    url = make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    missing = _kinitro("db", "status", "--database-url", url)
    try:
        created = _kinitro("db", "create", "--database-url", url)
        again = _kinitro("db", "create", "--database-url", url)
        init = _kinitro("db", "init", "--database-url", url)
    finally:
        drop = Warehouse(postgres_admin_url)
        with drop.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        drop.dispose()

    _assert_one_line_error(missing, f"database '{name}' does not exist", "kinitro db create")
    assert created.exit_code == 0 and created.output.startswith("created: ")
    assert again.exit_code == 0 and again.output.startswith("already exists: ")
    assert init.exit_code == 0, init.output
