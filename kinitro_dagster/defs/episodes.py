"""episode_results[cycle|env]: every evaluated miner plays the cycle's episodes of one env."""

import logging
import time
from collections import Counter, defaultdict
from pathlib import Path

import dagster as dg

from kinitro_dagster.defs.commitments import miner_commitments
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
from kinitro_dagster.settings import describe_environment
from kinitro_dagster.sim.partition import PolicyUnderTest
from kinitro_dagster.warehouse.records import CommitmentStatus, EpisodeRecord, failed_episodes

ROWS_CHECK = "episode_rows_complete"


@dg.asset(
    partitions_def=cycle_env,
    deps=[dg.AssetDep(miner_commitments, partition_mapping=by_cycle)],
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[dg.AssetCheckSpec(ROWS_CHECK, asset="episode_results",
                                   description="One row per evaluated miner × episode, no more, no less.")],
    group_name="evaluation",
    kinds={"mujoco"},
    pool="episodes",  # dagster.yaml limits how many episode partitions run at once
    description="Episodes of one env for every evaluated miner of the cycle (same seeds for all). An analyst reads "
                "`success by miner` (success rate, episodes, errors per uid), `errors` (episodes ended by each error "
                "kind), the episode and run settings, wall time and steps per second; `kinitro replay` or the "
                "`replay_episode` job plays any one episode again with its frames.",
)
@retries_transient_failures
def episode_results(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    hub: HubResource,
    cycle_config: CycleConfig,
    evaluator: Evaluator,
) -> dg.MaterializeResult:
    cycle, env_id = split_episode_key(context.partition_key)
    store = warehouse.store()
    cycle_record = store.get_cycle(cycle)
    if cycle_record is None:
        raise dg.Failure(f"cycle {cycle} has no commitments yet: materialize miner_commitments[{cycle}] first")
    config = recorded_configuration(cycle_record, ENABLED_ENV_IDS, cycle_config, evaluator)
    if env_id not in config.env_ids:
        # A code location loaded with more envs than this cycle opened with: nothing to play.
        context.log.info(f"{env_id} is not an env of cycle {cycle} (it runs {', '.join(config.env_ids)})")
        rows = len(store.episodes(cycle, env_id))
        return dg.MaterializeResult(
            metadata={"episodes": 0, "env_id": env_id, "skipped": f"not an env of cycle {cycle}"},
            check_results=[dg.AssetCheckResult(check_name=ROWS_CHECK, passed=rows == 0,
                                               metadata={"rows": rows, "expected": 0})],
        )
    miners = [c for c in store.commitments(cycle) if c.status is CommitmentStatus.OK]
    seeds = cycle_config.seeds(cycle_record.block_hash, env_id, config.episodes_per_env)

    started = time.monotonic()
    policies, unavailable = [], []
    for miner in miners:
        try:
            snapshot = hub.fetch(miner.repo, miner.revision)
            policies.append(PolicyUnderTest(miner.uid, snapshot.path, repo=snapshot.repo, revision=snapshot.revision))
        except SnapshotFetchError as exc:
            unavailable += failed_episodes(miner.uid, seeds, ErrorKind.DEPLOYMENT_FAILED, str(exc))
    context.log.info(f"{env_id}: {len(policies)} policies × {len(seeds)} episodes")
    played = evaluator.evaluate(env_id, policies, seeds, config, cycle_key=cycle)
    records = sorted(played + unavailable, key=lambda r: (r.uid, r.episode))
    store.replace_episodes(cycle, env_id, records)
    elapsed = time.monotonic() - started

    written = store.episodes(cycle, env_id)
    expected = len(miners) * len(seeds)
    steps = sum(r.steps for r in written)
    return dg.MaterializeResult(
        metadata={
            "episodes": len(written),
            "miners": len(miners),
            "env_id": env_id,
            # What this run played with, from the cycle's record, and what this run container has.
            "episode settings": dg.MetadataValue.json({
                k: getattr(config, k) for k in ("episodes_per_env", "max_timesteps", "action_timeout",
                                                "eval_timeout", "use_images", "privileged_state",
                                                "physics_randomization", "render_mesh_detail")}),
            "run settings": dg.MetadataValue.json({**evaluator.run_settings(), **_process_settings()}),
            "wall_seconds": round(elapsed, 2),
            "steps_per_second": round(steps / elapsed, 1) if elapsed > 0 else 0.0,
            "errors": dg.MetadataValue.json(dict(Counter(r.error_kind for r in written if r.error_kind))),
            "success by miner": dg.MetadataValue.md(_success_table(written)),
        },
        check_results=[dg.AssetCheckResult(
            check_name=ROWS_CHECK,
            passed=len(written) == expected and len({(r.uid, r.episode) for r in written}) == len(written),
            metadata={"rows": len(written), "expected": expected},
        )],
    )


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
