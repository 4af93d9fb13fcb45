"""The run queue: Dagster's QueuedRunCoordinator, plus a `kinitro/env_family` tag on every
episode-partition run so that deploy/dagster.yaml can give each env family its own budget.

The guide's queue settings take effect here, in the daemon that dequeues:
`KINITRO_EXECUTOR_BATCH_SIZE` is the number of runs in progress at once (max_concurrent_runs),
`KINITRO_EXECUTOR_POLL_INTERVAL_SECONDS` the seconds between dequeues, `KINITRO_EXECUTOR_EXECUTOR_ID`
a `kinitro/executor_id` tag on every run, and `KINITRO_SCHEDULER_CYCLE_TIMEOUT_SECONDS` each run's
`dagster/max_runtime` (run monitoring fails a run that outlives it).

Episode-partition runs are also tagged `dagster/retry_strategy: ALL_STEPS` (unless they name their
own): Dagster's default retry, from failure, does not re-execute the mapped steps of a dynamic output
that never started, so a retried partition killed mid-way would miss its unstarted shards
(`write_episodes` then refuses to write; tests/defs/test_sharded_partitions.py shows both).

Not part of the code location's Definitions: deploy/dagster.yaml names this class as the
instance's run coordinator, so the webserver and the daemon load it (the evaluator image has it).
Runs reach the queue from the cycle automation, sensors, UI launches, job and asset backfills and
run retries; all of them pass through `submit_run`, so all of them get the tag, which a
per-partition tag function on a job would give only to that job's own runs. A family the config's
`tag_concurrency_limits` do not name gets the budget its registry entry gives
(`EnvFamily.max_concurrent_runs`).
"""

import logging
from typing import Any

import dagster as dg
from dagster._core.storage.tags import MAX_RUNTIME_SECONDS_TAG, RETRY_STRATEGY_TAG

from kinitro_dagster.settings import ExecutorSettings, SchedulerSettings
from kinitro_dagster.sim.registry import env_family, families, partition_key_to_env_id

ENV_FAMILY_TAG = "kinitro/env_family"
EXECUTOR_ID_TAG = "kinitro/executor_id"
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


def retry_tags(run_tags: dict[str, str]) -> dict[str, str]:
    """A retried episode-partition run replays all its steps (module docstring); other runs, and
    runs that name a strategy, are left as they are."""
    if ENV_PARTITION_TAG not in run_tags or RETRY_STRATEGY_TAG in run_tags:
        return {}
    return {RETRY_STRATEGY_TAG: "ALL_STEPS"}


def settings_tags(run_tags: dict[str, str], executor: ExecutorSettings, scheduler: SchedulerSettings) -> dict[str, str]:
    """The tags the settings give every run: its max runtime (the cycle timeout, unless the run
    has its own) and the executor id."""
    tags = {}
    if MAX_RUNTIME_SECONDS_TAG not in run_tags:
        tags[MAX_RUNTIME_SECONDS_TAG] = str(scheduler.cycle_timeout_seconds)
    if executor.executor_id:
        tags[EXECUTOR_ID_TAG] = executor.executor_id
    return tags


def family_budgets(limits: list[dict]) -> list[dict]:
    """`limits` plus, for each registered family they do not limit, the registry's budget."""
    configured = {limit.get("value") for limit in limits if limit.get("key") == ENV_FAMILY_TAG}
    added = [{"key": ENV_FAMILY_TAG, "value": family.name, "limit": family.max_concurrent_runs}
             for family in families().values()
             if family.max_concurrent_runs is not None and family.name not in configured]  # fmt: skip
    return [*limits, *added]


class EnvFamilyRunCoordinator(dg.QueuedRunCoordinator):
    """QueuedRunCoordinator (same config) that tags each episode-partition run with its env family
    before the run is queued, so `tag_concurrency_limits` on `kinitro/env_family` apply to it, and
    applies the queue settings of the environment (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._executor = ExecutorSettings()
        self._scheduler = SchedulerSettings()
        if self._executor.batch_size is not None:
            kwargs["max_concurrent_runs"] = self._executor.batch_size
        if self._executor.poll_interval_seconds is not None:
            kwargs["dequeue_interval_seconds"] = self._executor.poll_interval_seconds
        kwargs["tag_concurrency_limits"] = family_budgets(kwargs.get("tag_concurrency_limits") or [])
        super().__init__(*args, **kwargs)

    def submit_run(self, context: dg.SubmitRunContext) -> dg.DagsterRun:
        run = context.dagster_run
        wanted = {**env_family_tags(run.tags), **retry_tags(run.tags),
                  **settings_tags(run.tags, self._executor, self._scheduler)}  # fmt: skip
        missing = {k: v for k, v in wanted.items() if run.tags.get(k) != v}
        if missing:
            self._instance.add_run_tags(run.run_id, missing)
            tagged = self._instance.get_run_by_id(run.run_id)
            if tagged is not None:
                context = context._replace(dagster_run=tagged)
        return super().submit_run(context)
