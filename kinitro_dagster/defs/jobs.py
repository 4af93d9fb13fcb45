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


evaluate_env_job = dg.define_asset_job(
    "evaluate_env", selection=[episode_results],
    # A partition is idempotent (its rows are replaced), so a failed run is simply run again, with
    # all its steps (the run coordinator's dagster/retry_strategy tag on every episode run).
    tags={"dagster/max_retries": "1"},
    description="Play one env's episodes for every miner of a cycle, in shards of "
                "KINITRO_EXECUTOR_MINERS_PER_SHARD miners (a step each).",
)  # fmt: skip
score_cycle_job = dg.define_asset_job(
    "score_cycle", selection=[pareto_scores, weights, audit_export],
    description="Score the cycle, publish its signed weights and write its audit export.",
)
