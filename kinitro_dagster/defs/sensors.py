"""Sensors: `cycle_sensor` opens cycles on the chain clock; automation carries them through."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from kinitro_dagster.defs.commitments import miner_commitments
from kinitro_dagster.defs.jobs import open_cycle_job, score_cycle_job
from kinitro_dagster.defs.partitions import cycle_block, cycle_key, cycles
from kinitro_dagster.defs.resources import ChainResource, CycleConfig, WarehouseResource
from kinitro_dagster.warehouse.records import CycleStatus
from kinitro_dagster.warehouse.store import Warehouse

SENSOR_INTERVAL_SECONDS = 30


@dg.sensor(jobs=[open_cycle_job, score_cycle_job], minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Opens a cycle when the chain head is at least eval_interval blocks past the last one, "
                       "and scores a cycle still unscored at its deadline (cycle_timeout_seconds) with the "
                       "episodes it has.")
def cycle_sensor(
    context: dg.SensorEvaluationContext, chain: ChainResource, cycle_config: CycleConfig,
    warehouse: WarehouseResource,
) -> dg.SensorResult | dg.SkipReason:
    store = warehouse.store()
    head = chain.reader().head()
    store.record_chain_head(head.number, datetime.now(UTC))  # /v1/status shows it
    overdue = [dg.RunRequest(job_name=score_cycle_job.name, run_key=f"deadline-{key}", partition_key=key)
               for key in _past_deadline(store, cycle_config.cycle_timeout_seconds)]
    for request in overdue:
        context.log.warning(f"cycle {request.partition_key} passed its deadline unscored: scoring the episodes it has")
    opened = [cycle_block(k) for k in context.instance.get_dynamic_partitions(cycles.name)]
    last = max(opened, default=None)
    if last is not None and head.number - last < cycle_config.eval_interval_blocks:
        skip = f"head at block {head.number}; next cycle opens at block {last + cycle_config.eval_interval_blocks}"
        return dg.SensorResult(run_requests=overdue) if overdue else dg.SkipReason(skip)
    key = cycle_key(head.number)
    context.log.info(f"opening cycle {key} at block {head.number} ({head.hash[:18]}…)")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(job_name=open_cycle_job.name, run_key=f"open-{key}", partition_key=key),
                      *overdue],
        dynamic_partitions_requests=[cycles.build_add_request([key])],
    )


def _past_deadline(store: Warehouse, default_timeout_s: int) -> list[str]:
    """Running cycles opened longer ago than their timeout (the recorded one, else the setting)
    that have no weights yet."""
    now = datetime.now(UTC)
    overdue = []
    for cycle in store.list_cycles(limit=10):
        if cycle.status is not CycleStatus.RUNNING:
            continue
        timeout = cycle.config.cycle_timeout_seconds if cycle.config else default_timeout_s
        if now - cycle.opened_at > timedelta(seconds=timeout) and store.weights_for_cycle(cycle.cycle_key) is None:
            overdue.append(cycle.cycle_key)
    return overdue


# Episodes, scores and weights follow their upstream as soon as it lands (eager conditions).
cycle_automation = dg.AutomationConditionSensorDefinition(
    "cycle_automation",
    target=dg.AssetSelection.all() - dg.AssetSelection.assets(miner_commitments),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    description="Runs each cycle's episodes, scores and weights once their inputs are materialized.",
)
