"""pareto_scores[cycle]: success per miner and env, thresholds, points and the ε-Pareto front."""

import logging
import math
from collections import Counter

import dagster as dg
import numpy as np

from kinitro_dagster.defs.episodes import episode_results
from kinitro_dagster.defs.markdown import md_image, md_table
from kinitro_dagster.defs.partitions import ENABLED_ENV_IDS, by_cycle, cycles
from kinitro_dagster.defs.plots import HISTORY_MINERS, front_plot, history_plot
from kinitro_dagster.defs.resources import CycleConfig, Evaluator, WarehouseResource, recorded_configuration
from kinitro_dagster.defs.retries import retries_transient_failures
from kinitro_dagster.scoring.inputs import ScoringParameters, score_records
from kinitro_dagster.warehouse.records import CommitmentStatus, EpisodeRecord, ParetoScoreRecord
from kinitro_dagster.warehouse.store import Warehouse

log = logging.getLogger(__name__)
HISTORY_CYCLES = 20  # cycles the history plot reaches back

FINITE_CHECK = "scores_are_finite"


@dg.asset(
    partitions_def=cycles,
    deps=[dg.AssetDep(episode_results, partition_mapping=by_cycle)],
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[dg.AssetCheckSpec(FINITE_CHECK, asset="pareto_scores",
                                   description="No NaN or infinity in success rates, points or thresholds.")],
    group_name="scoring",
    kinds={"numpy"},
    description="Epsilon-Pareto subset winners: points per miner, per-env thresholds, the Pareto front. An analyst "
                "reads, per cycle: the leaderboard (`scores`: success per env, points, weight, front), the `error "
                "kinds` per env, the `pareto front plot` (success per env, front miners in colour) and the "
                "`history plot` (success per env over the last 20 scored cycles for the 8 miners with most points).",
)
@retries_transient_failures
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
    episodes_by_env = store.episodes_by_env(cycle)
    inputs, scores = score_records(miners, episodes_by_env, env_ids, config.episodes_per_env,
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
            "error kinds": dg.MetadataValue.md(_error_kinds(episodes_by_env)),
            **_plots(store, cycle, env_ids, inputs.uids, inputs.success, scores.frontier, scores.points),
        },
        check_results=[dg.AssetCheckResult(check_name=FINITE_CHECK, passed=all(math.isfinite(x) for x in numbers))],
    )


def _error_kinds(episodes_by_env: dict[str, list[EpisodeRecord]]) -> str:
    """Episodes ended by each kind of error, per env: what went wrong, and where."""
    counts = {env: Counter(r.error_kind for r in rows if r.error_kind) for env, rows in episodes_by_env.items()}
    kinds = sorted(set().union(*counts.values())) if counts else []
    if not kinds:
        return "no episode ended by an error"
    return md_table(["env", *kinds], [(env, *(counts[env].get(k, 0) for k in kinds)) for env in sorted(counts)])


def _plots(store: Warehouse, cycle: str, env_ids: list[str], uids: np.ndarray, success: np.ndarray,
           frontier: np.ndarray, points: np.ndarray) -> dict[str, dg.MetadataValue]:  # fmt: skip
    """The front, and the history of the miners with the most points now. A plot that fails to draw is
    logged and left out: it never fails the scoring."""
    try:
        leaders = [int(uids[i]) for i in np.argsort(-points, kind="stable")[:HISTORY_MINERS]]
        history = store.success_history(HISTORY_CYCLES, up_to=cycle)
        return {
            "pareto front plot": dg.MetadataValue.md(md_image(front_plot(env_ids, uids, success, frontier), "pareto")),
            "history plot": dg.MetadataValue.md(md_image(history_plot(history, leaders), "history")),
        }
    except Exception:  # matplotlib on a host without fonts, say
        log.exception("cycle %s: the score plots could not be drawn", cycle)
        return {}


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
