"""The `kinitro` command: one group, a module per concern.

Each module's options map onto the settings classes in `kinitro_dagster.settings`, so a flag
and its `KINITRO_*` variable always mean the same thing. The modules import what their commands
run inside the commands: `kinitro --help` stays fast.

    services   demo, dev, api, scheduler, executor: the embedded default and the guide's services
    db         db create / init / status / reset: the warehouse database
    env        env list / test / build: simulated environments and their images
    runtimes   runtimes list / prune: the miner runtimes this host keeps
    audit      verify, replay: a validator's check of published weights; one recorded episode played again
    plan       plan: the hosts and time a cycle needs, from this host's measured rates
"""

from __future__ import annotations

import click

from kinitro_dagster.cli import audit, db, env, plan, runtimes, services
from kinitro_dagster.cli.services import _EXECUTOR_FLAGS as _EXECUTOR_FLAGS  # the service tests read these
from kinitro_dagster.cli.services import _SCHEDULER_FLAGS as _SCHEDULER_FLAGS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Kinitro evaluation backend on Dagster."""
    from kinitro_dagster.settings import check_environment

    try:
        check_environment()  # a misspelt or unsupported KINITRO_* variable stops every command here
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    # So does a value that does not parse (`KINITRO_SCHEDULER_ENV_IDS=a,b`): one line naming it.
    services.checked_settings({})


for _command in (
    services.demo, services.dev, services.api, services.scheduler, services.executor,
    db.db, env.env, runtimes.runtimes, audit.verify, audit.replay, plan.plan,
):  # fmt: skip
    main.add_command(_command)
