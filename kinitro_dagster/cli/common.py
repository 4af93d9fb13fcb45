"""What every command group shares: failures an operator can fix are one line and exit code 1."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


def policy_python(policy_dir: Path, settings, own_runtime: bool) -> str:
    """The interpreter that serves the policy: its runtime's (built or reused, as local eval mode
    does), or this venv's when it declares nothing more, or with --no-runtime."""
    from kinitro_dagster.miners.disk import DiskFull
    from kinitro_dagster.miners.runtimes import RuntimeBuildError, RuntimeSettings, ensure_venv_runtime
    from kinitro_dagster.settings import state_dir

    if not own_runtime:
        return sys.executable
    runtime_settings = RuntimeSettings(
        root=state_dir() / "runtimes", index_url=settings.miner_runtime_index_url,
        extra_index_url=settings.miner_runtime_extra_index_url, max_size=settings.miner_runtime_max_size,
        build_timeout_s=settings.miner_runtime_build_timeout,
    )
    try:
        runtime = ensure_venv_runtime(policy_dir, runtime_settings)
    except RuntimeBuildError as exc:
        raise click.ClickException(f"the policy's runtime cannot be built: {exc.reason}") from exc
    except DiskFull as exc:
        raise click.ClickException(str(exc)) from exc
    if runtime is None:
        click.echo("runtime: this venv (the policy declares nothing it lacks)")
        return sys.executable
    click.echo(f"runtime: {runtime.location} ({'built' if runtime.built else 'reused'} in {runtime.seconds:.1f} s, "
               f"{len(runtime.pins)} packages)")  # fmt: skip
    return runtime.python
