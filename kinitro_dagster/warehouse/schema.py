"""Alembic, configured in code: migrations live inside the package and run from any cwd.

A developer adding a migration: change `tables.py`, then

    from alembic import command
    from kinitro_dagster.warehouse.schema import alembic_config
    command.revision(alembic_config(url="sqlite:////tmp/w.db"), "what changed", autogenerate=True,
                     rev_id="0002")

against a database at the previous head, and review the generated file.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

SCRIPT_LOCATION = "kinitro_dagster.warehouse:migrations"

# pg_advisory_xact_lock key that serializes concurrent `migrate()` calls (parallel Dagster runs
# starting at once) on one PostgreSQL database. Any constant works; this spells "kinitro".
_PG_MIGRATION_LOCK = 0x6B696E6974726F


def alembic_config(connection: sa.Connection | None = None, url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    config.attributes["url"] = url
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("the warehouse package ships no migrations; the installation is broken")
    return head


def current_revision(connection: sa.Connection) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade_to_head(connection: sa.Connection) -> None:
    """Upgrade inside the caller's transaction (committed by the caller).

    On PostgreSQL an advisory lock makes a second concurrent caller wait, then find the schema
    at head; on SQLite the caller's `BEGIN IMMEDIATE` does the same.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    command.upgrade(alembic_config(connection=connection), "head")
