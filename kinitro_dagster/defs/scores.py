"""pareto_scores[cycle]: success per miner and env, thresholds, points and the ε-Pareto front."""

import math

import dagster as dg

from kinitro_dagster.defs.episodes import episode_results
from kinitro_dagster.defs.markdown import md_table
from kinitro_dagster.defs.partitions import ENABLED_ENV_IDS, by_cycle, cycles
from kinitro_dagster.defs.resources import CycleConfig, Evaluator, WarehouseResource, recorded_configuration
from kinitro_dagster.scoring.inputs import ScoringParameters, score_records
from kinitro_dagster.warehouse.records import CommitmentStatus, ParetoScoreRecord

FINITE_CHECK = "scores_are_finite"


@dg.asset(
    partitions_def=cycles,
    deps=[dg.AssetDep(episode_results, partition_mapping=by_cycle)],
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[dg.AssetCheckSpec(FINITE_CHECK, asset="pareto_scores",
                                   description="No NaN or infinity in success rates, points or thresholds.")],
    group_name="scoring",
    kinds={"numpy"},
    description="Epsilon-Pareto subset winners: points per miner, per-env thresholds, the Pareto front.",
)
def pareto_scores(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, cycle_config: CycleConfig, evaluator: Evaluator
) -> dg.MaterializeResult:
    cycle = context.partition_key
    store = warehouse.store()
    record = store.get_cycle(cycle)
    if record is None:
        raise dg.Failure(f"cycle {cycle} is unknown to the warehouse: materialize miner_commitments[{cycle}] first")
    # The cycle's own envs, episode count and temperature, whatever this code location was loaded with.
    config = recorded_configuration(record, ENABLED_ENV_IDS, cycle_config, evaluator)
    env_ids = list(config.env_ids)
    miners = [c for c in store.commitments(cycle) if c.status is CommitmentStatus.OK]
    inputs, scores = score_records(miners, store.episodes_by_env(cycle), env_ids, config.episodes_per_env,
                                   ScoringParameters.for_cycle(config))
    weights = scores.weights  # all zero when nobody is live (scores.has_weights is False)
    pareto = [
        ParetoScoreRecord(uid=int(uid), on_frontier=bool(scores.frontier[i]), points=float(scores.points[i]),
                          weight=float(weights[i]),
                          thresholds={env: float(scores.thresholds[i, e]) for e, env in enumerate(env_ids)})
        for i, uid in enumerate(inputs.uids)
    ]
    store.replace_scores(cycle, inputs.miner_scores, pareto)
    retired = _retire_deployments(context, evaluator, cycle)

    numbers = [s.success_rate for s in inputs.miner_scores] + [p.points for p in pareto] + [
        t for p in pareto for t in p.thresholds.values()]
    short = [env.split("/")[-1] for env in env_ids]
    return dg.MaterializeResult(
        metadata={
            "miners scored": len(pareto),
            "live miners": int(inputs.live.sum()),
            "envs": dg.MetadataValue.json(env_ids),
            "pareto temperature": config.pareto_temperature,
            "pareto front": dg.MetadataValue.json([p.uid for p in pareto if p.on_frontier]),
            **retired,
            "scores": dg.MetadataValue.md(md_table(
                ["uid", *short, "points", "weight", "front"],
                [(int(uid), *inputs.success[i], float(scores.points[i]), float(weights[i]),
                  "✓" if scores.frontier[i] else "") for i, uid in enumerate(inputs.uids)],
            )),
        },
        check_results=[dg.AssetCheckResult(check_name=FINITE_CHECK, passed=all(math.isfinite(x) for x in numbers))],
    )


def _retire_deployments(context: dg.AssetExecutionContext, evaluator: Evaluator, cycle: str) -> dict[str, int]:
    """The cycle is scored: its shared policy containers go (docker mode). Never fails the scoring."""
    try:
        report = evaluator.retire_deployments(cycle)
    except Exception as error:  # no docker daemon here: they fall to the idle TTL
        context.log.warning(f"could not remove the policy containers of cycle {cycle}: {error}; "
                            "they are removed once idle past KINITRO_EXECUTOR_MINER_DEPLOYMENT_TTL_SECONDS")
        return {}
    if report is None:
        return {}
    return {"policy containers removed": report.removed, "policy containers still leased": report.busy}
