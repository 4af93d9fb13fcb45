"""The `kinitro` command: one group, a section per concern.

Each section's options map onto the settings classes in `kinitro_dagster.settings`, so a flag
and its `KINITRO_*` variable always mean the same thing.
"""

from __future__ import annotations

import time
from pathlib import Path

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Kinitro evaluation backend on Dagster."""


# --- demo and dev: the embedded default -------------------------------------------------------


@main.command()
def demo() -> None:
    """Run one full evaluation cycle on the embedded default and print the weights."""
    import logging

    from kinitro_dagster.demo import leaderboard, run_demo

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    click.echo("Kinitro demo: local miners, file chain, SQLite warehouse, Dagster instance under DAGSTER_HOME")
    cycle = run_demo()
    from kinitro_dagster.settings import SchedulerSettings

    click.echo("\n" + leaderboard(SchedulerSettings().database_url, cycle) + "\n")
    click.echo("Open the Dagster UI and the weights API:  make dev   (UI http://127.0.0.1:3000, "
               "API http://127.0.0.1:8000/v1/weights/latest)")


@main.command()
@click.option("--ui-port", default=3000, show_default=True, help="Dagster UI port.")
@click.option("--api-port", default=8000, show_default=True, help="Weights API port.")
def dev(ui_port: int, api_port: int) -> None:
    """Start `dagster dev` (UI + daemon) on this workspace and the weights API, until Ctrl-C."""
    import subprocess
    import sys

    from kinitro_dagster.demo import REPO_ROOT, apply_demo_environment

    apply_demo_environment()
    bin_dir = Path(sys.executable).parent
    processes = [
        subprocess.Popen([str(bin_dir / "dagster"), "dev", "-w", str(REPO_ROOT / "workspace.yaml"),
                          "-p", str(ui_port), "-h", "127.0.0.1"], cwd=REPO_ROOT),
        subprocess.Popen([str(bin_dir / "kinitro"), "api", "--host", "127.0.0.1", "--port", str(api_port)],
                         cwd=REPO_ROOT),
    ]
    click.echo(f"Dagster UI http://127.0.0.1:{ui_port}  weights API http://127.0.0.1:{api_port}  (Ctrl-C stops both)")
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
