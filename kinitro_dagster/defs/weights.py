"""weights[cycle]: the weights validators fetch, as floats and as bittensor's u16 pair, signed with
the digest of everything they were computed from."""

import math
from datetime import UTC, datetime

import dagster as dg

from kinitro_dagster.audit.attestation import attest, scoring_record
from kinitro_dagster.defs.markdown import md_table
from kinitro_dagster.defs.partitions import ENABLED_ENV_IDS, cycles
from kinitro_dagster.defs.resources import (
    CycleConfig,
    Evaluator,
    SigningResource,
    WarehouseResource,
    recorded_configuration,
)
from kinitro_dagster.defs.retries import retries_transient_failures
from kinitro_dagster.defs.scores import pareto_scores
from kinitro_dagster.scoring import weights_to_u16
from kinitro_dagster.scoring.inputs import ScoringParameters
from kinitro_dagster.warehouse.records import CycleStatus, WeightsRecord

DISTRIBUTION_CHECK = "weights_form_distribution"
SUM_TOLERANCE = 1e-9


@dg.asset(
    partitions_def=cycles,
    deps=[pareto_scores],
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[dg.AssetCheckSpec(DISTRIBUTION_CHECK, asset="weights",
                                   description="Weights are finite, ≥ 0 and sum to 1 within 1e-9.")],
    group_name="scoring",
    kinds={"sql"},
    description="Published weights of the cycle: the table the weights API serves to validators. Each row "
                "carries the digest of the cycle's inputs and the backend hotkey's signature (metadata: digest, "
                "signer); `kinitro verify` checks them.",
)
@retries_transient_failures
def weights(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, signing: SigningResource,
    cycle_config: CycleConfig, evaluator: Evaluator,
) -> dg.MaterializeResult:
    cycle = context.partition_key
    store = warehouse.store()
    record = store.get_cycle(cycle)
    if record is None:
        raise dg.Failure(f"cycle {cycle} is unknown to the warehouse: materialize miner_commitments[{cycle}] first")
    scores = store.pareto_scores(cycle)
    by_uid = {s.uid: s.weight for s in scores}
    now = datetime.now(UTC)
    n_miners = len(store.commitments(cycle))
    if not any(w > 0 for w in by_uid.values()):
        store.complete_cycle(cycle, CycleStatus.FAILED, now, n_miners)
        context.log.warning(f"cycle {cycle}: no live miner, no weights published")
        return dg.MaterializeResult(
            metadata={"published": False, "reason": "no live miner"},
            check_results=[dg.AssetCheckResult(check_name=DISTRIBUTION_CHECK, passed=True,
                                               metadata={"note": "nothing published"})],
        )
    u16_uids, u16_values = weights_to_u16(list(by_uid), list(by_uid.values()))
    config = recorded_configuration(record, ENABLED_ENV_IDS, cycle_config, evaluator)
    key = signing.key()
    attestation = attest(record, store.commitments(cycle), store.episodes_by_env(cycle),
                         scoring_record(ScoringParameters.for_cycle(config)), by_uid,
                         dict(zip(u16_uids, u16_values, strict=True)), key)
    store.write_weights(WeightsRecord(
        cycle_key=cycle, block=record.block, weights=by_uid, u16_uids=list(u16_uids), u16_values=list(u16_values),
        created_at=now, n_miners=len(scores),  # miners evaluated
        n_envs=len(config.env_ids), duration_seconds=(now - record.opened_at).total_seconds(),
        attestation=attestation,
    ))
    store.complete_cycle(cycle, CycleStatus.COMPLETED, now, n_miners)

    published = store.weights_for_cycle(cycle)
    values = list(published.weights.values()) if published else []
    total = sum(values)
    passed = bool(values) and all(math.isfinite(w) and w >= 0 for w in values) and abs(total - 1) <= SUM_TOLERANCE
    return dg.MaterializeResult(
        metadata={
            "published": True,
            "block": record.block,
            "miners with weight": sum(w > 0 for w in values),
            "digest": attestation.digest,
            "signer": f"{key.ss58_address} (throwaway demo key)" if key.throwaway else key.ss58_address,
            "weights": dg.MetadataValue.md(md_table(
                ["uid", "weight", "u16"],
                [(uid, w, dict(zip(u16_uids, u16_values, strict=True)).get(uid, 0))
                 for uid, w in sorted(by_uid.items(), key=lambda kv: -kv[1])],
            )),
        },
        check_results=[dg.AssetCheckResult(check_name=DISTRIBUTION_CHECK, passed=passed,
                                           metadata={"sum": total, "count": len(values)})],
    )
