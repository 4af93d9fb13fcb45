"""One env partition played in shards, each its own step in its own process (Dagster's multiprocess
executor), writes the same episode rows as the partition played by one step."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableRepository

import kinitro_dagster.definitions
from kinitro_dagster.definitions import build_definitions
from kinitro_dagster.defs.episodes import MissingShardsError, PlayedShard, shards_of, write_episodes
from kinitro_dagster.defs.partitions import ENABLED_ENV_IDS, episode_key
from kinitro_dagster.defs.resources import build_resources
from kinitro_dagster.defs.run_coordinator import retry_tags
from kinitro_dagster.demo import open_cycle
from kinitro_dagster.miners.chain import ChainCommitment, write_chain_file
from kinitro_dagster.miners.hub import publish_to_cache

MINERS = Path(__file__).resolve().parents[2] / "examples" / "miners"
OUTCOME = ("uid", "episode", "seed", "success", "steps", "total_reward", "error_kind", "error")


def test_shards_cover_the_miners_in_order():
    assert [(s.index, s.uids) for s in shards_of([3, 5, 8, 9, 12], 2)] == [(0, (3, 5)), (1, (8, 9)), (2, (12,))]
    assert [s.uids for s in shards_of([3, 5], None)] == [(3, 5)]
    assert [s.uids for s in shards_of([], 4)] == [()]  # one step still writes the (empty) partition


@contextlib.contextmanager
def _opened_cycle(tmp_path: Path, monkeypatch, database_url: str) -> Iterator[tuple]:
    """Three demo miners committed, the cycle opened: (resources, Dagster instance, cycle, partition)."""
    for name, value in {"KINITRO_STATE_DIR": tmp_path / "state", "KINITRO_DATABASE_URL": database_url,
                        "KINITRO_SCHEDULER_EPISODES_PER_ENV": 2, "KINITRO_SCHEDULER_EVAL_INTERVAL_BLOCKS": 100,
                        "KINITRO_EXECUTOR_MAX_TIMESTEPS": 80, "KINITRO_EXECUTOR_PRIVILEGED_STATE": "true",
                        "KINITRO_EXECUTOR_USE_IMAGES": "false", "KINITRO_EXECUTOR_MAX_WORKERS": 1}.items():  # fmt: skip
        monkeypatch.setenv(name, str(value))  # step processes inherit them
    resources = build_resources()
    cache = Path(resources["hub"].cache_dir)
    names = ["scripted_expert", "noisy_expert", "random_policy"]
    revisions = [publish_to_cache(MINERS / name, f"demo/{name}", cache_dir=cache) for name in names]
    commitments = [ChainCommitment(uid, f"5Miner{uid}", f"demo/{name}:{revision}", 10)
                   for uid, (name, revision) in enumerate(zip(names, revisions, strict=True))]  # fmt: skip
    write_chain_file(Path(resources["chain"].chain_file), commitments, name="shard-test", head_block=1200)
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        cycle = open_cycle(instance, resources)
        open_job = build_definitions(resources).resolve_job_def("open_cycle")
        assert open_job.execute_in_process(instance=instance, partition_key=cycle).success
        yield resources, instance, cycle, str(episode_key(cycle, ENABLED_ENV_IDS[0]))


def _sharded_job(monkeypatch):
    """evaluate_env with one miner a shard, as the code location's module builds it: each step
    process loads it from there, with this process's settings (this process too, once reloaded: the
    module built its Definitions from the settings it was first imported with)."""
    monkeypatch.setenv("KINITRO_EXECUTOR_MINERS_PER_SHARD", "1")
    importlib.reload(kinitro_dagster.definitions)
    return ReconstructableRepository.for_module("kinitro_dagster.definitions", "defs").get_reconstructable_job(
        "evaluate_env")


@pytest.mark.slow
def test_a_partition_in_shards_writes_the_rows_of_one_step(tmp_path, monkeypatch, database_url):
    env_id = ENABLED_ENV_IDS[0]
    with _opened_cycle(tmp_path, monkeypatch, database_url) as (resources, instance, cycle, partition):
        store = resources["warehouse"].store()
        defs = build_definitions(resources)
        evaluate = defs.resolve_job_def("evaluate_env")
        assert evaluate.execute_in_process(instance=instance, partition_key=partition).success
        one_step = [tuple(getattr(r, f) for f in OUTCOME) for r in store.episodes(cycle, env_id)]

        result = dg.execute_job(_sharded_job(monkeypatch), instance=instance, tags={"dagster/partition": partition})
        assert result.success
        sharded = [tuple(getattr(r, f) for f in OUTCOME) for r in store.episodes(cycle, env_id)]
        starts = [e for e in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_START)
                  if e.step_key.startswith("episode_results.play_shard")]  # fmt: skip
        # The row check ran with the write, and passed (a graph asset's check must be yielded to count).
        (check,) = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        assert check.dagster_event.event_specific_data.passed
        # The shards' outputs were on the state dir until the rows were written; then they were deleted.
        outputs = tmp_path / "state" / "step-outputs" / result.run_id
        assert outputs.is_dir() and not list(outputs.glob("episode_results.play_shard*"))

        # A shard's output that never arrives (lost with a dead container's storage) fails the write
        # and keeps the rows: two of three miners' episodes are not the partition.
        rows = store.episodes(cycle, env_id)
        partial = [PlayedShard((uid,), [r for r in rows if r.uid == uid], 1.0) for uid in (0, 1)]
        context = dg.build_op_context(partition_key=partition, instance=instance, resources={
            k: resources[k] for k in ("warehouse", "cycle_config", "evaluator")})
        with pytest.raises(MissingShardsError, match=r"uids \[2\] did not reach this step"):
            list(write_episodes(context, partial))
        assert [tuple(getattr(r, f) for f in OUTCOME) for r in store.episodes(cycle, env_id)] == sharded

    assert len(one_step) == 3 * 2 and len({r[0] for r in one_step}) == 3
    assert sharded == one_step
    assert {r[3] for r in one_step} == {True, False}  # the expert succeeds where the random policy fails
    # Three shards, three steps, each in a process of its own (neither this one nor each other's).
    assert sorted(e.step_key for e in starts) == [f"episode_results.play_shard[shard_{i}]" for i in range(3)]
    assert len({e.dagster_event.pid for e in starts} | {os.getpid()}) == 4


KILL_SCRIPT = """
import json
import sys
import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository
repository = ReconstructableRepository.for_module("kinitro_dagster.definitions", "defs")
job = repository.get_reconstructable_job("evaluate_env")
with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
    dg.execute_job(job, instance=instance, tags=json.loads(sys.argv[2]),
                   run_config={"execution": {"config": {"max_concurrent": 1}}})
"""


@pytest.mark.slow
def test_a_killed_sharded_run_is_retried_whole_and_never_written_in_part(tmp_path, monkeypatch):
    """The run's process group is SIGKILLed (as a run container dies) once one shard has finished
    and the next is playing. Retried from failure (Dagster's default), the unstarted shard is not
    re-executed: `write_episodes` refuses, and the partition keeps no partial rows. Retried with all
    steps, as the run coordinator tags every episode run, the partition is written whole."""
    shard_steps = [f"episode_results.play_shard[shard_{i}]" for i in range(3)]
    sqlite = f"sqlite:///{tmp_path / 'warehouse.db'}"
    with _opened_cycle(tmp_path, monkeypatch, sqlite) as (resources, instance, cycle, partition):
        job = _sharded_job(monkeypatch)
        # The tags of a launched partition's run: its key, and its key in each dimension.
        key = episode_key(cycle, ENABLED_ENV_IDS[0])
        dimensions = {f"dagster/partition/{dim}": k for dim, k in key.keys_by_dimension.items()}
        tags = {"dagster/partition": partition, **dimensions}
        run = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "dagster"), json.dumps(tags)],
                               env=os.environ.copy(), start_new_session=True)  # fmt: skip
        deadline, finished, started = time.monotonic() + 240, set(), set()
        while not (finished and started - finished):
            assert time.monotonic() < deadline and run.poll() is None, "the run ended before it could be killed"
            runs = instance.get_runs(dg.RunsFilter(job_name="evaluate_env"))
            events = instance.all_logs(runs[0].run_id) if runs else []
            finished = {e.step_key for e in events if e.is_dagster_event and e.dagster_event.is_step_success
                        and e.step_key in shard_steps}  # fmt: skip
            started = {e.step_key for e in events if e.is_dagster_event and e.dagster_event.is_step_start
                       and e.step_key in shard_steps}  # fmt: skip
            time.sleep(0.05)
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        (killed,) = instance.get_runs(dg.RunsFilter(job_name="evaluate_env"))
        instance.report_run_failed(killed)  # what run monitoring does when a run's container is gone
        store = resources["warehouse"].store()

        from_failure = dg.execute_job(job, instance=instance, tags=killed.tags,
                                      reexecution_options=dg.ReexecutionOptions.from_failure(killed.run_id, instance))
        refused = [e for e in instance.all_logs(from_failure.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)]
        rows_after_refusal = store.episodes(cycle, ENABLED_ENV_IDS[0])

        # As the daemon retries an episode run: the coordinator's tags, all steps.
        tags = {**killed.tags, **retry_tags(killed.tags)}
        assert tags["dagster/retry_strategy"] == "ALL_STEPS"
        retry = dg.execute_job(job, instance=instance, tags=tags,
                               reexecution_options=dg.ReexecutionOptions(parent_run_id=killed.run_id))
        replayed = {e.step_key for e in instance.all_logs(retry.run_id, of_type=dg.DagsterEventType.STEP_START)}
        rows = store.episodes(cycle, ENABLED_ENV_IDS[0])

    assert not from_failure.success and rows_after_refusal == []
    assert [e.step_key for e in refused] == ["episode_results.write_episodes"]
    assert "did not reach this step" in refused[0].dagster_event.step_failure_data.error.message
    assert retry.success and set(shard_steps) <= replayed
    assert len(rows) == 3 * 2 and {r.uid for r in rows} == {0, 1, 2}
    assert not [r.error for r in rows if r.error_kind]
