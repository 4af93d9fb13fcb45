"""The Dagster code location: everything assembled here, nothing else."""

from __future__ import annotations

import dagster as dg

from kinitro_dagster.defs.audit import audit_export
from kinitro_dagster.defs.commitments import miner_commitments
from kinitro_dagster.defs.episodes import episode_results
from kinitro_dagster.defs.executors import step_executor
from kinitro_dagster.defs.jobs import evaluate_env_job, open_cycle_job, score_cycle_job
from kinitro_dagster.defs.replay import replay_episode
from kinitro_dagster.defs.resources import build_resources
from kinitro_dagster.defs.scores import pareto_scores
from kinitro_dagster.defs.sensors import cycle_automation, cycle_sensor
from kinitro_dagster.defs.weights import weights


def build_definitions(resources: dict[str, dg.ConfigurableResource] | None = None) -> dg.Definitions:
    """The code location; tests and tools pass their own resources, the default reads KINITRO_*."""
    resources = resources if resources is not None else build_resources()
    evaluator = resources.get("evaluator")
    return dg.Definitions(
        assets=[miner_commitments, episode_results, pareto_scores, weights, audit_export],
        jobs=[open_cycle_job, evaluate_env_job, score_cycle_job, replay_episode],
        sensors=[cycle_sensor, cycle_automation],
        resources=resources,
        # Every job's, the automation's implicit asset jobs included (they launch the episode partitions).
        executor=step_executor(getattr(evaluator, "step_executor", "process")),
    )


defs = build_definitions()
