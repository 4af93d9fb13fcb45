"""kinitro db: create, migrate, inspect or reset the warehouse database."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from kinitro_dagster.cli.common import operator_errors

if TYPE_CHECKING:  # imported lazily at run time: `kinitro --help` stays fast
    from kinitro_dagster.warehouse.records import CycleRecord, WeightsRecord


# --- db: warehouse management (owner: warehouse / weights API) --------------------------------


def _database_url(given: str | None) -> str:
    """--database-url, else the scheduler's (the warehouse writer's) KINITRO_* setting."""
    if given:
        return given
    from kinitro_dagster.settings import SchedulerSettings

    return SchedulerSettings().database_url


_database_url_option = click.option(
    "--database-url",
    default=None,
    help="Warehouse URL (default: KINITRO_SCHEDULER_DATABASE_URL, else KINITRO_DATABASE_URL, "
    "else the state dir's SQLite file).",
)


@click.group()
def db() -> None:
    """Create, migrate, inspect or reset the warehouse database."""


@db.command("create")
@_database_url_option
def db_create(database_url: str | None) -> None:
    """Create the database if it is missing (PostgreSQL: CREATE DATABASE; SQLite: the file)."""
    from kinitro_dagster.warehouse import create_database
    from kinitro_dagster.warehouse.store import safe_url

    with operator_errors():
        url = _database_url(database_url)
        created = create_database(url)
    click.echo(f"{'created' if created else 'already exists'}: {safe_url(url)}")
    if created:
        click.echo("next: kinitro db init --database-url ...")


@db.command("init")
@_database_url_option
def db_init(database_url: str | None) -> None:
    """Create or upgrade the warehouse tables (Alembic migrations to head). Safe to re-run."""
    from kinitro_dagster.warehouse import Warehouse

    with operator_errors():
        store = Warehouse(_database_url(database_url))
        store.ping()
        before = store.schema_revision()
        store.migrate()
        after = store.schema_revision()
    change = "already at" if before == after else f"migrated {before or 'empty database'} ->"
    click.echo(f"schema {change} revision {after} (head): {store!r}")


def _require_existing_sqlite_file(url: str) -> None:
    """Inspecting must not create: a missing SQLite file is reported, not made."""
    from kinitro_dagster.warehouse import WarehouseUnavailable
    from kinitro_dagster.warehouse.store import normalize_url

    parsed = normalize_url(url)
    on_disk = parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
    if on_disk and not Path(parsed.database).expanduser().exists():
        raise WarehouseUnavailable(
            f"no SQLite warehouse at {parsed.database}; create it with `kinitro db init` "
            "(or point --database-url / KINITRO_DATABASE_URL at the right file)"
        )


@db.command("status")
@_database_url_option
def db_status(database_url: str | None) -> None:
    """Cycles, unique miners, latest completed and running cycle, latest weights."""
    from kinitro_dagster.warehouse import Warehouse, WarehouseSchemaMissing
    from kinitro_dagster.warehouse.store import safe_url

    with operator_errors():
        url = _database_url(database_url)
        _require_existing_sqlite_file(url)
        store = Warehouse(url)
        store.ping()
        summary = store.summary()
        if summary.schema_revision is None:
            raise WarehouseSchemaMissing(
                f"{safe_url(store.url)} has no warehouse tables; run `kinitro db init --database-url ...`"
            )
    head = summary.head_revision
    schema_line = summary.schema_revision + (" (head)" if summary.schema_revision == head else
                                             f" (code expects {head}: run `kinitro db init`)")
    by_status = ", ".join(f"{status} {n}" for status, n in sorted(summary.cycles_by_status.items()))
    lines = [
        ("database", safe_url(store.url)),
        ("schema", schema_line),
        ("cycles", f"{summary.total_cycles}" + (f" ({by_status})" if by_status else "")),
        ("unique miners", str(summary.unique_miners)),
        ("latest completed", _describe_cycle(summary.latest_completed)),
        ("running", _describe_cycle(summary.running)),
        ("latest weights", _describe_weights(summary.latest_weights)),
    ]
    for label, value in lines:
        click.echo(f"{label + ':':<18}{value}")


def _describe_cycle(cycle: CycleRecord | None) -> str:
    if cycle is None:
        return "none"
    text = f"cycle {cycle.cycle_key} (block {cycle.block}), opened {cycle.opened_at:%Y-%m-%d %H:%M:%S}Z"
    if cycle.completed_at is not None:
        minutes = (cycle.completed_at - cycle.opened_at).total_seconds() / 60
        text += f", completed {cycle.completed_at:%Y-%m-%d %H:%M:%S}Z ({minutes:.1f} min)"
    return text + f", {cycle.n_miners} miners, {cycle.n_envs} envs"


def _describe_weights(weights: WeightsRecord | None) -> str:
    if weights is None:
        return "none published"
    paid = sorted(((w, uid) for uid, w in weights.weights.items() if w > 0), reverse=True)
    top = ", ".join(f"uid {uid} {w:.4f}" for w, uid in paid[:3])
    return (
        f"cycle {weights.cycle_key} (block {weights.block}), created {weights.created_at:%Y-%m-%d %H:%M:%S}Z, "
        f"{len(paid)} uids with weight" + (f"; top: {top}" if top else "")
    )


@db.command("reset")
@_database_url_option
@click.option("--force", is_flag=True, help="Required: confirms that every table and row is dropped.")
def db_reset(database_url: str | None, force: bool) -> None:
    """Drop every warehouse table and re-create an empty schema. Destroys all data."""
    from kinitro_dagster.warehouse import Warehouse
    from kinitro_dagster.warehouse.store import safe_url

    with operator_errors():
        url = _database_url(database_url)
        if not force:
            raise click.ClickException(f"refusing to drop all data in {safe_url(url)} without --force")
        store = Warehouse(url)
        store.ping()
        store.reset()
        store.migrate()
    click.echo(f"reset: all warehouse data dropped, empty schema at revision {store.schema_revision()}: {store!r}")
