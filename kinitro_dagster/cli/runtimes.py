"""kinitro runtimes: the miner runtimes this host keeps (venvs and kinitro/runtime images)."""

from __future__ import annotations

import time

import click


@click.group()
def runtimes() -> None:
    """Miner runtimes this host keeps (venvs under the state dir, kinitro/runtime images): list, prune."""


@runtimes.command("list")
def runtimes_list() -> None:
    """Every runtime, its size and when a miner last used it (oldest first)."""
    from kinitro_dagster.miners.runtime_store import stored_runtimes
    from kinitro_dagster.settings import state_dir

    found = stored_runtimes(state_dir() / "runtimes")
    if not found:
        click.echo("no runtimes: every policy so far ran in the base runtime")
        return
    click.echo(f"{'RUNTIME':<16}  {'KIND':<5}  {'SIZE':>9}  {'LAST USED':<16}  LOCATION")
    for runtime in found:
        click.echo(f"{runtime.id[:16]}  {runtime.kind:<5}  {_size(runtime.size_bytes):>9}  "
                   f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(runtime.last_used)):<16}  {runtime.location}")


@runtimes.command("prune")
@click.option("--unused-days", type=click.FloatRange(min=0), default=14.0, show_default=True,
              help="Remove runtimes no miner has built or reused for this many days.")
@click.option("--venvs-only", is_flag=True, help="Leave the kinitro/runtime images (docker mode) alone.")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
def runtimes_prune(unused_days: float, venvs_only: bool, dry_run: bool) -> None:
    """Remove runtimes nobody used lately; a miner that needs one again rebuilds it."""
    from kinitro_dagster.miners.runtime_store import prune_runtimes
    from kinitro_dagster.settings import state_dir

    removed, kept = prune_runtimes(state_dir() / "runtimes", unused_days * 86400, dry_run=dry_run,
                                   images=not venvs_only)  # fmt: skip
    verb = "would remove" if dry_run else "removed"
    for runtime in removed:
        click.echo(f"{verb} {runtime.kind} {runtime.location} ({_size(runtime.size_bytes)})")
    for runtime, why in kept:
        click.echo(f"kept {runtime.kind} {runtime.location}: {why}")
    freed = sum(r.size_bytes or 0 for r in removed)
    click.echo(f"{verb} {len(removed)} runtime(s), {_size(freed)}; {len(kept)} kept")


def _size(size_bytes: int | None) -> str:
    if size_bytes is None:
        return "?"
    return f"{size_bytes / 2**30:.1f} GiB" if size_bytes >= 2**30 else f"{size_bytes / 2**20:.0f} MiB"
