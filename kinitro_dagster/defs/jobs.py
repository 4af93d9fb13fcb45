"""Asset jobs: what the sensor launches and what an operator can run by hand per partition."""

from __future__ import annotations

import dagster as dg

from kinitro_dagster.defs.audit import audit_export
from kinitro_dagster.defs.commitments import miner_commitments
from kinitro_dagster.defs.episodes import episode_results
from kinitro_dagster.defs.scores import pareto_scores
from kinitro_dagster.defs.weights import weights

open_cycle_job = dg.define_asset_job(
    "open_cycle", selection=[miner_commitments],
    description="Read the chain at the cycle's block and fetch every committed policy.",
)


def evaluate_env_job(sharded: bool = False) -> dg.UnresolvedAssetJobDefinition:
    """Play one env partition. `sharded` (KINITRO_EXECUTOR_MINERS_PER_SHARD set): each shard's step
    runs in a process of its own (Dagster's multiprocess executor); else every step runs in the run's
    process, which then loads the code once."""
    return dg.define_asset_job(
        "evaluate_env", selection=[episode_results],
        # A partition is idempotent (its rows are replaced), so a failed run is simply run again, all
        # of it: a step's inputs live in the failed run's storage, which a killed container takes along.
        tags={"dagster/max_retries": "1", "dagster/retry_strategy": "ALL_STEPS"},
        executor_def=dg.multiprocess_executor if sharded else dg.in_process_executor,
        description="Play one env's episodes for every miner of a cycle, in shards of "
                    "KINITRO_EXECUTOR_MINERS_PER_SHARD miners (a step each).",
    )  # fmt: skip
score_cycle_job = dg.define_asset_job(
    "score_cycle", selection=[pareto_scores, weights, audit_export],
    description="Score the cycle, publish its signed weights and write its audit export.",
)
