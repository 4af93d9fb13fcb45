"""The production run queue: Dagster's QueuedRunCoordinator, plus a `kinitro/env_family` tag on
every episode-partition run so that deploy/dagster.yaml can give each env family its own budget.

Not part of the code location's Definitions: deploy/dagster.yaml names this class as the
instance's run coordinator, so the webserver and the daemon load it (the evaluator image has it).
Runs reach the queue from the cycle automation, sensors, UI launches, job and asset backfills and
run retries; all of them pass through `submit_run`, so all of them get the tag, which a
per-partition tag function on a job would give only to that job's own runs.
"""

import logging

import dagster as dg

from kinitro_dagster.sim.registry import env_family, partition_key_to_env_id

ENV_FAMILY_TAG = "kinitro/env_family"
# Dagster tags a run of a multi-partitioned asset with each dimension's key: dagster/partition/<dim>.
ENV_PARTITION_TAG = "dagster/partition/env"

log = logging.getLogger(__name__)


def env_family_tags(run_tags: dict[str, str]) -> dict[str, str]:
    """{ENV_FAMILY_TAG: family} for a run of one env partition; {} for any other run."""
    env_key = run_tags.get(ENV_PARTITION_TAG)
    if not env_key:
        return {}
    try:
        return {ENV_FAMILY_TAG: env_family(partition_key_to_env_id(env_key))}
    except ValueError:
        log.warning("run tagged %s=%r: not an env partition key, no %s tag", ENV_PARTITION_TAG, env_key, ENV_FAMILY_TAG)
        return {}


class EnvFamilyRunCoordinator(dg.QueuedRunCoordinator):
    """QueuedRunCoordinator (same config) that tags each episode-partition run with its env family
    before the run is queued, so `tag_concurrency_limits` on `kinitro/env_family` apply to it."""

    def submit_run(self, context: dg.SubmitRunContext) -> dg.DagsterRun:
        run = context.dagster_run
        missing = {k: v for k, v in env_family_tags(run.tags).items() if run.tags.get(k) != v}
        if missing:
            self._instance.add_run_tags(run.run_id, missing)
            tagged = self._instance.get_run_by_id(run.run_id)
            if tagged is not None:
                context = context._replace(dagster_run=tagged)
        return super().submit_run(context)
