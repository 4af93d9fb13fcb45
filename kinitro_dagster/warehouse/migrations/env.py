"""Alembic environment for the warehouse.

`kinitro_dagster.warehouse.schema.alembic_config()` builds the configuration in code, so no
alembic.ini is needed and migrations run from any working directory. The caller passes an open
connection in `config.attributes["connection"]` (what `Warehouse.migrate()` does); with only a
URL (`config.attributes["url"]`) this module opens one itself, which is what a developer's
`alembic revision --autogenerate` through `alembic_config(url=...)` uses.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from kinitro_dagster.warehouse.tables import metadata

config = context.config


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.attributes.get("url")
    if not url:
        raise RuntimeError("alembic_config() needs a connection or a url")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported; run `kinitro db init`")
run_migrations_online()
