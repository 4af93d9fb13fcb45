"""miner_commitments[cycle]: who is evaluated this cycle, with what, and who is not and why."""

# No `from __future__ import annotations` in asset modules: Dagster reads the context annotation.

from collections import Counter
from datetime import UTC, datetime

import dagster as dg

from kinitro_dagster.defs.markdown import md_table
from kinitro_dagster.defs.partitions import ENABLED_ENV_IDS, cycle_block, cycles
from kinitro_dagster.defs.resources import (
    ChainResource,
    CycleConfig,
    Evaluator,
    HubResource,
    WarehouseResource,
    cycle_configuration,
)
from kinitro_dagster.defs.retries import retries_transient_failures
from kinitro_dagster.miners.resolve import resolve_commitments
from kinitro_dagster.warehouse.records import CycleRecord


@dg.asset(
    partitions_def=cycles,
    group_name="evaluation",
    kinds={"bittensor", "huggingface"},
    description="Miners' on-chain commitments at the cycle's block, parsed, fetched and checked for copies.",
)
@retries_transient_failures
def miner_commitments(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, chain: ChainResource, hub: HubResource,
    cycle_config: CycleConfig, evaluator: Evaluator,
) -> dg.MaterializeResult:
    cycle = context.partition_key
    block = cycle_block(cycle)
    reader = chain.reader()
    store = warehouse.store()
    # The first materialization records the cycle's configuration; a re-run keeps it.
    config = cycle_configuration(ENABLED_ENV_IDS, cycle_config, evaluator)
    store.upsert_cycle(CycleRecord(cycle_key=cycle, block=block, block_hash=reader.block_hash(block),
                                   opened_at=datetime.now(UTC), n_envs=len(config.env_ids), config=config))
    recorded = store.get_cycle(cycle)
    config = recorded.config if recorded and recorded.config else config
    records = resolve_commitments(reader.commitments(at_block=block), fetch=hub.fetch,
                                  record_first_seen=store.record_first_seen)
    store.replace_commitments(cycle, records)
    by_status = Counter(r.status.value for r in records)
    context.log.info(f"cycle {cycle}: {len(records)} commitments {dict(by_status)}")
    return dg.MaterializeResult(metadata={
        "miners": len(records),
        "evaluated": by_status.get("ok", 0),
        "rejected": len(records) - by_status.get("ok", 0),
        "configuration": dg.MetadataValue.json(config.to_json()),
        "commitments": dg.MetadataValue.md(md_table(
            ["uid", "repo", "revision", "first seen", "status", "reason"],
            [(r.uid, r.repo, (r.revision or "")[:8], r.first_seen_block, r.status.value, r.reason) for r in records],
        )),
    })
