"""What every command group shares: failures an operator can fix are one line and exit code 1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click


@contextmanager
def operator_errors() -> Iterator[None]:
    """Turn configuration and database failures into one line and exit code 1, no traceback."""
    import pydantic
    import sqlalchemy as sa

    from kinitro_dagster.settings import UnknownSettingError, UnsupportedSettingError
    from kinitro_dagster.warehouse import WarehouseUnavailable
    from kinitro_dagster.warehouse.errors import first_error_line

    try:
        yield
    except (WarehouseUnavailable, UnknownSettingError, UnsupportedSettingError) as exc:
        raise click.ClickException(str(exc)) from exc
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise click.ClickException(f"invalid configuration: {problems}") from exc
    except sa.exc.SQLAlchemyError as exc:
        reason = first_error_line(exc)
        raise click.ClickException(f"database error: {reason}; check the database URL and server") from exc
