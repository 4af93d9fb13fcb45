"""episode_results[cycle|env]: every evaluated miner plays the cycle's episodes of one env."""

import glob
import logging
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from kinitro_dagster.defs.markdown import md_table
from kinitro_dagster.defs.partitions import ENABLED_ENV_IDS, by_cycle, cycle_env, split_episode_key
from kinitro_dagster.defs.resources import (
    CycleConfig,
    Evaluator,
    HubResource,
    WarehouseResource,
    recorded_configuration,
)
from kinitro_dagster.defs.retries import retries_transient_failures
from kinitro_dagster.logs import EXECUTOR_LOGGERS, PACKAGE_LOGGER
from kinitro_dagster.miners.hub import SnapshotFetchError
from kinitro_dagster.protocol import ErrorKind
from kinitro_dagster.settings import describe_environment, state_dir
from kinitro_dagster.sim.partition import PolicyUnderTest
from kinitro_dagster.warehouse.records import CommitmentStatus, EpisodeRecord, failed_episodes

ROWS_CHECK = "episode_rows_complete"


@dataclass(frozen=True)
class Shard:
    """Some of a partition's miners, played by one step (`play_shard`)."""

    index: int
    uids: tuple[int, ...]


@dataclass(frozen=True)
class PlayedShard:
    """A shard's episodes, every one of its miners' (played, or failed with the reason)."""

    uids: tuple[int, ...]
    records: list[EpisodeRecord]
    seconds: float


class MissingShardsError(dg.Failure):
    """Some miners' shard outputs did not reach `write_episodes`: the partition's rows are kept."""


def shards_of(uids: list[int], miners_per_shard: int | None) -> list[Shard]:
    """`uids` in order, cut into shards of `miners_per_shard` (None: one shard); always one at least."""
    size = miners_per_shard or max(1, len(uids))
    return [Shard(i, tuple(uids[start : start + size])) for i, start in enumerate(range(0, max(1, len(uids)), size))]


def _cycle_and_config(context: dg.OpExecutionContext, store, cycle_config: CycleConfig, evaluator: Evaluator):
    cycle, env_id = split_episode_key(context.partition_key)
    cycle_record = store.get_cycle(cycle)
    if cycle_record is None:
        raise dg.Failure(f"cycle {cycle} has no commitments yet: materialize miner_commitments[{cycle}] first")
    return cycle, env_id, cycle_record, recorded_configuration(cycle_record, ENABLED_ENV_IDS, cycle_config, evaluator)


@dg.op(ins={"commitments": dg.In(dg.Nothing)}, out=dg.DynamicOut(Shard))
@retries_transient_failures
def episode_shards(
    context: dg.OpExecutionContext, warehouse: WarehouseResource, cycle_config: CycleConfig, evaluator: Evaluator
) -> list[dg.DynamicOutput]:
    """The partition's evaluated miners in shards of KINITRO_EXECUTOR_MINERS_PER_SHARD, one step each."""
    store = warehouse.store()
    cycle, env_id, _, config = _cycle_and_config(context, store, cycle_config, evaluator)
    if env_id not in config.env_ids:
        uids: list[int] = []
    else:
        uids = sorted(c.uid for c in store.commitments(cycle) if c.status is CommitmentStatus.OK)
    shards = shards_of(uids, evaluator.miners_per_shard)
    context.log.info(f"{env_id}: {len(uids)} miners in {len(shards)} shard(s)")
    return [dg.DynamicOutput(shard, mapping_key=f"shard_{shard.index}") for shard in shards]


@dg.op(pool="episodes", tags={"kinitro/step": "episodes"})
@retries_transient_failures
def play_shard(
    context: dg.OpExecutionContext,
    shard: Shard,
    warehouse: WarehouseResource,
    hub: HubResource,
    cycle_config: CycleConfig,
    evaluator: Evaluator,
) -> PlayedShard:
    """Every episode of the shard's miners: the same rows, whichever step or host plays them."""
    store = warehouse.store()
    cycle, env_id, cycle_record, config = _cycle_and_config(context, store, cycle_config, evaluator)
    if env_id not in config.env_ids or not shard.uids:
        return PlayedShard(shard.uids, [], 0.0)
    miners = [c for c in store.commitments(cycle) if c.status is CommitmentStatus.OK and c.uid in shard.uids]
    seeds = cycle_config.seeds(cycle_record.block_hash, env_id, config.episodes_per_env)
    started = time.monotonic()
    policies, unavailable = [], []
    for miner in miners:
        try:
            snapshot = hub.fetch(miner.repo, miner.revision)
            policies.append(PolicyUnderTest(miner.uid, snapshot.path, repo=snapshot.repo, revision=snapshot.revision))
        except SnapshotFetchError as exc:
            unavailable += failed_episodes(miner.uid, seeds, ErrorKind.DEPLOYMENT_FAILED, str(exc))
    context.log.info(f"{env_id} shard {shard.index}: {len(policies)} policies × {len(seeds)} episodes")
    played = evaluator.evaluate(env_id, policies, seeds, config, cycle_key=cycle)
    return PlayedShard(shard.uids, played + unavailable, time.monotonic() - started)


@dg.op(out={"result": dg.Out(dg.Nothing), f"episode_results_{ROWS_CHECK}": dg.Out()})
def write_episodes(
    context: dg.OpExecutionContext,
    shards: list[PlayedShard],
    warehouse: WarehouseResource,
    cycle_config: CycleConfig,
    evaluator: Evaluator,
):
    """Replace the partition's rows with every shard's, as one write; its metadata and row check
    (yielded: Dagster records a graph asset's check from a yielded AssetCheckResult only)."""
    yield from _write_episodes(context, shards, warehouse, cycle_config, evaluator)


@retries_transient_failures
def _write_episodes(
    context: dg.OpExecutionContext,
    shards: list[PlayedShard],
    warehouse: WarehouseResource,
    cycle_config: CycleConfig,
    evaluator: Evaluator,
) -> tuple[dg.Output, dg.AssetCheckResult]:
    store = warehouse.store()
    cycle, env_id, _, config = _cycle_and_config(context, store, cycle_config, evaluator)
    if env_id not in config.env_ids:
        # A code location loaded with more envs than this cycle opened with: nothing to play.
        context.log.info(f"{env_id} is not an env of cycle {cycle} (it runs {', '.join(config.env_ids)})")
        rows = len(store.episodes(cycle, env_id))
        return (
            dg.Output(None, "result", metadata={"episodes": 0, "env_id": env_id,
                                                "skipped": f"not an env of cycle {cycle}"}),
            dg.AssetCheckResult(asset_key="episode_results", check_name=ROWS_CHECK, passed=rows == 0,
                                metadata={"rows": rows, "expected": 0}),
        )  # fmt: skip
    evaluated = {c.uid for c in store.commitments(cycle) if c.status is CommitmentStatus.OK}
    missing = sorted(evaluated - {uid for shard in shards for uid in shard.uids})
    if missing:
        # Never replace a partition's rows with part of them (a step's output lost with its storage).
        raise MissingShardsError(
            f"{env_id}: the played shards of uids {missing} did not reach this step, so the partition's rows "
            f"are left as they were: run the partition again with all its steps (the launchpad's 'All steps')")
    records = sorted((r for shard in shards for r in shard.records), key=lambda r: (r.uid, r.episode))
    store.replace_episodes(cycle, env_id, records)
    _discard_shard_outputs(context)
    written = store.episodes(cycle, env_id)
    miners = len(evaluated)
    expected = miners * config.episodes_per_env
    steps = sum(r.steps for r in written)
    seconds = [round(shard.seconds, 2) for shard in shards]
    output = dg.Output(None, "result", metadata={
        "episodes": len(written),
        "miners": miners,
        "env_id": env_id,
        # What this run played with, from the cycle's record, and what this run container has.
        "episode settings": dg.MetadataValue.json({
            k: getattr(config, k) for k in ("episodes_per_env", "max_timesteps", "action_timeout",
                                            "eval_timeout", "use_images", "privileged_state",
                                            "physics_randomization", "render_mesh_detail")}),
        "run settings": dg.MetadataValue.json({**evaluator.run_settings(), **_process_settings()}),
        "shards": len(shards),
        "wall_seconds": max(seconds, default=0.0),  # of the longest shard (shards may run at once)
        "steps_per_second": round(steps / sum(seconds), 1) if sum(seconds) > 0 else 0.0,  # per shard-second
        "errors": dg.MetadataValue.json(dict(Counter(r.error_kind for r in written if r.error_kind))),
        "success by miner": dg.MetadataValue.md(_success_table(written)),
    })  # fmt: skip
    check = dg.AssetCheckResult(
        asset_key="episode_results", check_name=ROWS_CHECK,
        passed=len(written) == expected and len({(r.uid, r.episode) for r in written}) == len(written),
        metadata={"rows": len(written), "expected": expected},
    )  # fmt: skip
    return output, check


@dg.graph_asset(
    partitions_def=cycle_env,
    ins={"miner_commitments": dg.AssetIn(partition_mapping=by_cycle, dagster_type=dg.Nothing)},
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[dg.AssetCheckSpec(ROWS_CHECK, asset="episode_results",
                                   description="One row per evaluated miner × episode, no more, no less.")],
    group_name="evaluation",
    kinds={"mujoco"},
    description="Episodes of one env for every evaluated miner of the cycle (same seeds for all), played in shards of "
                "KINITRO_EXECUTOR_MINERS_PER_SHARD miners, one step each (`play_shard`), and written as one. An "
                "analyst reads `success by miner` (success rate, episodes, errors per uid), `errors` (episodes ended "
                "by each error kind), the episode and run settings, wall time and steps per second; `kinitro replay` "
                "or the `replay_episode` job plays any one episode again with its frames.",
)
def episode_results(miner_commitments):
    played = episode_shards(miner_commitments).map(play_shard).collect()
    result, check = write_episodes(played)
    return {"result": result, f"episode_results_{ROWS_CHECK}": check}


def _discard_shard_outputs(context: dg.OpExecutionContext) -> None:
    """Delete the step outputs this partition's rows were written from: its run's and the runs it
    retried (`resources.step_output_manager` keeps them under the state dir by run id)."""
    root = state_dir() / "step-outputs"
    run: dg.DagsterRun | None = context.run
    while run is not None:
        for step in ("episode_results.episode_shards", "episode_results.play_shard"):
            for path in (root / run.run_id).glob(f"{glob.escape(step)}*"):
                shutil.rmtree(path, ignore_errors=True)
        run = context.instance.get_run_by_id(run.parent_run_id) if run.parent_run_id else None


def _process_settings() -> dict[str, object]:
    """Log levels in effect and the memory limit of the container this run executes in."""
    # cgroup v2, else v1 (where "no limit" is a huge number rather than "max").
    files = [Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")]
    limit = next((f.read_text().strip() for f in files if f.is_file()), None)
    return {
        "log_level": logging.getLevelName(logging.getLogger(PACKAGE_LOGGER).getEffectiveLevel()),
        "executor_log_level": logging.getLevelName(logging.getLogger(EXECUTOR_LOGGERS[0]).getEffectiveLevel()),
        "memory_limit_bytes": int(limit) if limit and limit.isdigit() else limit,
        "environment": describe_environment(),
    }


def _success_table(records: list[EpisodeRecord]) -> str:
    by_uid: dict[int, list[EpisodeRecord]] = defaultdict(list)
    for record in records:
        by_uid[record.uid].append(record)
    rows = []
    for uid, episodes in sorted(by_uid.items()):
        errors = Counter(e.error_kind for e in episodes if e.error_kind)
        rows.append((uid, sum(e.success for e in episodes) / len(episodes), len(episodes),
                     ", ".join(f"{k}×{n}" for k, n in errors.items())))
    return md_table(["uid", "success rate", "episodes", "errors"], rows)
