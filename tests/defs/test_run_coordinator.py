"""deploy/dagster.yaml's run coordinator tags every episode-partition run with its env family, so
the queue's per-family limits apply to the runs that the cycle automation launches (and the UI,
backfills and retries: every run is submitted through it)."""

import datetime
import logging
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import (
    InProcessTestWorkspaceLoadTarget,
    create_test_daemon_workspace_context,
    freeze_time,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._daemon.asset_daemon import AssetDaemon
from dagster._daemon.backfill import execute_backfill_iteration

from kinitro_dagster.defs.partitions import ENABLED_ENV_IDS, cycles, episode_key
from kinitro_dagster.defs.run_coordinator import (
    ENV_FAMILY_TAG,
    EnvFamilyRunCoordinator,
    env_family_tags,
    retry_tags,
)
from kinitro_dagster.defs.sensors import SENSOR_INTERVAL_SECONDS
from kinitro_dagster.sim.registry import env_family

REPO = Path(__file__).resolve().parents[2]
CYCLE = "0000001200"


@pytest.fixture
def production_queue():
    """A real instance with deploy/dagster.yaml's run coordinator, verbatim, and the code location
    loaded as the daemon loads it; `tick()` runs one iteration of the automation and backfill daemons."""
    coordinator = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())["run_coordinator"]
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="kinitro_dagster.definitions", attribute="defs", working_directory=str(REPO)),
        location_name="kinitro",
    )
    with (
        dg.instance_for_test(overrides={"run_coordinator": coordinator}) as instance,
        create_test_daemon_workspace_context(InProcessTestWorkspaceLoadTarget(origin), instance) as workspace,
    ):
        automation = AssetDaemon(settings=instance.get_auto_materialize_settings(), pre_sensor_interval_seconds=0)
        clock = [datetime.datetime.now(datetime.UTC)]

        def backfills() -> None:
            list(execute_backfill_iteration(workspace, logging.getLogger("backfill")))

        def tick() -> None:
            clock[0] += datetime.timedelta(seconds=SENSOR_INTERVAL_SECONDS + 1)  # the sensor's interval
            with freeze_time(clock[0]):
                backfills()  # a backfill whose runs are done completes, so its partitions are no longer in progress
                automation._run_iteration_impl(
                    workspace, threadpool_executor=None, amp_tick_futures={}, debug_crash_flags={}
                )
                backfills()  # the automation emits a backfill; this submits its runs

        yield instance, tick


def test_automation_queues_episode_runs_tagged_with_their_env_family(production_queue):
    instance, tick = production_queue
    assert isinstance(instance.run_coordinator, EnvFamilyRunCoordinator)
    tick()  # the automation is running before the cycle opens
    instance.add_dynamic_partitions(cycles.name, [CYCLE])
    instance.report_runless_asset_event(dg.AssetMaterialization("miner_commitments", partition=CYCLE))
    tick()

    runs = instance.get_runs()
    assert sorted(r.tags["dagster/partition"] for r in runs) == sorted(
        str(episode_key(CYCLE, env_id)) for env_id in ENABLED_ENV_IDS
    )
    for run in runs:
        assert run.status == dg.DagsterRunStatus.QUEUED
        assert run.tags["dagster/sensor_name"] == "cycle_automation"
        assert run.tags[ENV_FAMILY_TAG] == env_family(ENABLED_ENV_IDS[0]) == "metaworld"
        # KINITRO_SCHEDULER_CYCLE_TIMEOUT_SECONDS (default) as each run's max runtime: run monitoring enforces it.
        assert run.tags["dagster/max_runtime"] == "7200"
        # A retry replays the whole partition (from failure, Dagster would skip unstarted shards).
        assert run.tags["dagster/retry_strategy"] == "ALL_STEPS"

    # Scoring follows once every env partition is in; its run is not an episode run: no family.
    # (The episode runs are not executed here: they leave the queue and their materializations land.)
    for run in runs:
        instance.report_run_canceled(run)
    for env_id in ENABLED_ENV_IDS:
        instance.report_runless_asset_event(
            dg.AssetMaterialization("episode_results", partition=str(episode_key(CYCLE, env_id)))
        )
    tick()
    scoring = [r for r in instance.get_runs() if r.tags["dagster/partition"] == CYCLE]
    assert len(scoring) == 1 and ENV_FAMILY_TAG not in scoring[0].tags
    assert "dagster/retry_strategy" not in scoring[0].tags
    assert scoring[0].status == dg.DagsterRunStatus.QUEUED


def test_an_episode_runs_own_retry_strategy_is_kept():
    assert retry_tags({"dagster/partition/env": "metaworld.reach-v3"}) == {"dagster/retry_strategy": "ALL_STEPS"}
    assert retry_tags({"dagster/partition/env": "metaworld.reach-v3", "dagster/retry_strategy": "FROM_FAILURE"}) == {}
    assert retry_tags({"dagster/partition": CYCLE}) == {}


def test_family_comes_from_the_env_partition_tag():
    # Automation and asset backfills launch runs of an implicit asset job, not evaluate_env: the
    # partition tags are what every launch path has in common.
    assert env_family_tags({"dagster/partition/env": "procthor.FloorPlan1"}) == {ENV_FAMILY_TAG: "procthor"}
    assert env_family_tags({"dagster/partition/env": "metaworld.pick-place-v3"}) == {ENV_FAMILY_TAG: "metaworld"}
    assert env_family_tags({"dagster/partition": CYCLE}) == {}
    assert env_family_tags({"dagster/partition/env": "not-an-env-key"}) == {}


def test_family_limits_name_the_tag_the_coordinator_sets(production_queue):
    instance, _ = production_queue
    limits = instance.run_coordinator.get_run_queue_config().tag_concurrency_limits
    assert {lim["value"]: lim["limit"] for lim in limits if lim["key"] == ENV_FAMILY_TAG} == {
        "metaworld": 4,
        "procthor": 1,
        "genesis": 2,  # not in deploy/dagster.yaml: the registry's budget fills in
    }
