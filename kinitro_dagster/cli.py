"""The `kinitro` command: one group, a section per concern.

Each section's options map onto the settings classes in `kinitro_dagster.settings`, so a flag
and its `KINITRO_*` variable always mean the same thing.
"""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Kinitro evaluation backend on Dagster."""
