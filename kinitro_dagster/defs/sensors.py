"""Sensors: `cycle_sensor` opens cycles on the chain clock; automation carries them through."""

from datetime import UTC, datetime

import dagster as dg

from kinitro_dagster.defs.commitments import miner_commitments
from kinitro_dagster.defs.jobs import open_cycle_job
from kinitro_dagster.defs.partitions import cycle_block, cycle_key, cycles
from kinitro_dagster.defs.resources import ChainResource, CycleConfig, WarehouseResource

SENSOR_INTERVAL_SECONDS = 30


@dg.sensor(job=open_cycle_job, minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Opens a cycle when the chain head is at least eval_interval blocks past the last one.")
def cycle_sensor(
    context: dg.SensorEvaluationContext, chain: ChainResource, cycle_config: CycleConfig,
    warehouse: WarehouseResource,
) -> dg.SensorResult | dg.SkipReason:
    head = chain.reader().head()
    warehouse.store().record_chain_head(head.number, datetime.now(UTC))  # /v1/status shows it
    opened = [cycle_block(k) for k in context.instance.get_dynamic_partitions(cycles.name)]
    last = max(opened, default=None)
    if last is not None and head.number - last < cycle_config.eval_interval_blocks:
        return dg.SkipReason(
            f"head at block {head.number}; next cycle opens at block {last + cycle_config.eval_interval_blocks}"
        )
    key = cycle_key(head.number)
    context.log.info(f"opening cycle {key} at block {head.number} ({head.hash[:18]}…)")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"open-{key}", partition_key=key)],
        dynamic_partitions_requests=[cycles.build_add_request([key])],
    )


# Episodes, scores and weights follow their upstream as soon as it lands (eager conditions).
cycle_automation = dg.AutomationConditionSensorDefinition(
    "cycle_automation",
    target=dg.AssetSelection.all() - dg.AssetSelection.assets(miner_commitments),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    description="Runs each cycle's episodes, scores and weights once their inputs are materialized.",
)
