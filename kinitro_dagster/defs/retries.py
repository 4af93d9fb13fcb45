"""Step retries for failures of what an asset stands on (chain, database), not of its own logic.

Run retries (dagster.yaml) rerun a run whose worker died; a step that raised is left failed, since
a bug fails the same way again. But a chain endpoint that times out or a database that restarts
raises inside the step too, and then a cycle would wait for an operator. These errors are turned
into Dagster's own step retry (`RetryRequested`), with a doubling wait: every Kinitro asset
replaces its rows as a whole, so running the step again is safe.
"""

import functools
from collections.abc import Callable
from typing import Any

import dagster as dg
import sqlalchemy as sa

from kinitro_dagster.miners.bittensor_chain import ChainUnavailable
from kinitro_dagster.miners.chain import ChainFileError
from kinitro_dagster.miners.disk import DiskFull
from kinitro_dagster.warehouse import WarehouseUnavailable
from kinitro_dagster.warehouse.errors import first_error_line

# Unreachable or silent chain, a chain file caught mid-write, a full disk under the hub cache or the
# runtime store (an operator frees it), an unreachable or restarting database.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ChainUnavailable,
    ChainFileError,
    DiskFull,
    WarehouseUnavailable,
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
)
MAX_RETRIES = 5
FIRST_WAIT_S = 10.0  # then 20, 40, 80, 160: about five minutes in all
MAX_WAIT_S = 160.0


def retry_wait_s(retry_number: int) -> float:
    return min(FIRST_WAIT_S * 2**retry_number, MAX_WAIT_S)


def retries_transient_failures[F: Callable[..., Any]](asset_fn: F) -> F:
    """Wrap an asset's function (beneath `@dg.asset`) so TRANSIENT_ERRORS request a step retry."""

    @functools.wraps(asset_fn)
    def wrapper(context: dg.AssetExecutionContext, *args: Any, **kwargs: Any) -> Any:
        try:
            return asset_fn(context, *args, **kwargs)
        except TRANSIENT_ERRORS as exc:
            attempt = context.retry_number + 1
            if attempt > MAX_RETRIES:
                raise
            wait = retry_wait_s(context.retry_number)
            context.log.warning(
                f"{type(exc).__name__}: {first_error_line(exc)}; the step runs again in {wait:g} s "
                f"(retry {attempt} of {MAX_RETRIES})"
            )
            raise dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=wait) from exc

    return wrapper  # type: ignore[return-value]
