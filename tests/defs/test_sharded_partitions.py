"""One env partition played in shards, each its own step in its own process (Dagster's multiprocess
executor), writes the same episode rows as the partition played by one step."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableRepository

import kinitro_dagster.definitions
from kinitro_dagster.definitions import build_definitions
from kinitro_dagster.defs.episodes import MissingShardsError, PlayedShard, shards_of, write_episodes
from kinitro_dagster.defs.partitions import ENABLED_ENV_IDS, episode_key
from kinitro_dagster.defs.resources import build_resources
from kinitro_dagster.demo import open_cycle
from kinitro_dagster.miners.chain import ChainCommitment, write_chain_file
from kinitro_dagster.miners.hub import publish_to_cache

MINERS = Path(__file__).resolve().parents[2] / "examples" / "miners"
OUTCOME = ("uid", "episode", "seed", "success", "steps", "total_reward", "error_kind", "error")


def test_shards_cover_the_miners_in_order():
    assert [(s.index, s.uids) for s in shards_of([3, 5, 8, 9, 12], 2)] == [(0, (3, 5)), (1, (8, 9)), (2, (12,))]
    assert [s.uids for s in shards_of([3, 5], None)] == [(3, 5)]
    assert [s.uids for s in shards_of([], 4)] == [()]  # one step still writes the (empty) partition


@pytest.mark.slow
def test_a_partition_in_shards_writes_the_rows_of_one_step(tmp_path, monkeypatch, database_url):
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
    defs = build_definitions(resources)
    env_id = ENABLED_ENV_IDS[0]
    store = resources["warehouse"].store()

    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        cycle = open_cycle(instance, resources)
        assert defs.resolve_job_def("open_cycle").execute_in_process(instance=instance, partition_key=cycle).success
        partition = str(episode_key(cycle, env_id))
        evaluate = defs.resolve_job_def("evaluate_env")
        assert evaluate.execute_in_process(instance=instance, partition_key=partition).success
        one_step = [tuple(getattr(r, f) for f in OUTCOME) for r in store.episodes(cycle, env_id)]

        monkeypatch.setenv("KINITRO_EXECUTOR_MINERS_PER_SHARD", "1")
        # Each step process loads the job from the code location's module, with this process's settings
        # (this process too: the module built its Definitions from the settings it was first imported with).
        importlib.reload(kinitro_dagster.definitions)
        job = ReconstructableRepository.for_module("kinitro_dagster.definitions", "defs").get_reconstructable_job(
            "evaluate_env")
        result = dg.execute_job(job, instance=instance, tags={"dagster/partition": partition})
        assert result.success
        sharded = [tuple(getattr(r, f) for f in OUTCOME) for r in store.episodes(cycle, env_id)]
        starts = [e for e in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_START)
                  if e.step_key.startswith("episode_results.play_shard")]  # fmt: skip
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
            write_episodes(context, partial)
        assert [tuple(getattr(r, f) for f in OUTCOME) for r in store.episodes(cycle, env_id)] == sharded

    assert len(one_step) == 3 * 2 and len({r[0] for r in one_step}) == 3
    assert sharded == one_step
    assert {r[3] for r in one_step} == {True, False}  # the expert succeeds where the random policy fails
    # Three shards, three steps, each in a process of its own (neither this one nor each other's).
    assert sorted(e.step_key for e in starts) == [f"episode_results.play_shard[shard_{i}]" for i in range(3)]
    assert len({e.dagster_event.pid for e in starts} | {os.getpid()}) == 4
