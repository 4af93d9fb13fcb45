"""audit_export[cycle]: the cycle's audit export as Parquet files, checked as a validator would."""

from pathlib import Path

import dagster as dg

from kinitro_dagster.audit.export import CycleAudit, cycle_audit_from, load_audit, write_audit
from kinitro_dagster.audit.verify import verify_weights, weights_response_fields
from kinitro_dagster.defs.markdown import md_table
from kinitro_dagster.defs.partitions import cycles
from kinitro_dagster.defs.resources import SigningResource, WarehouseResource
from kinitro_dagster.defs.retries import retries_transient_failures
from kinitro_dagster.defs.weights import weights
from kinitro_dagster.settings import state_dir

VERIFIES_CHECK = "audit_export_verifies"


def audit_dir(cycle: str) -> Path:
    """Where a cycle's export lives: `<state dir>/audit/<cycle>/<table>.parquet`."""
    return state_dir() / "audit" / cycle


@dg.asset(
    partitions_def=cycles,
    deps=[weights],
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[dg.AssetCheckSpec(
        VERIFIES_CHECK, asset="audit_export",
        description="`kinitro verify` on the files written, as a validator runs it: the published signature is the "
                    "configured hotkey's, every digest part recomputes from the files, and the weights recompute "
                    "bit for bit from the exported commitments and episodes.")],
    group_name="audit",
    kinds={"parquet"},
    description="The cycle's audit export: Parquet tables of the cycle (configuration, attestation), commitments, "
                "episodes, miner scores, Pareto scores and weights under <state dir>/audit/<cycle>/. Load one "
                "with `pandas.read_parquet(path)`; the metadata lists the paths and row counts. The weights API "
                "serves the same tables at /v1/audit/{cycle_id}.",
)
@retries_transient_failures
def audit_export(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, signing: SigningResource
) -> dg.MaterializeResult:
    cycle = context.partition_key
    audit = cycle_audit_from(warehouse.store(), cycle)
    if audit is None:
        raise dg.Failure(f"cycle {cycle} is unknown to the warehouse: materialize miner_commitments[{cycle}] first")
    paths = write_audit(audit, audit_dir(cycle))
    written = load_audit(audit_dir(cycle))
    metadata: dict[str, dg.RawMetadataValue] = {
        "directory": dg.MetadataValue.path(str(audit_dir(cycle))),
        **{f"{name} rows": count for name, count in _row_counts(written).items()},
        "load": dg.MetadataValue.md(f"```python\nimport pandas as pd\nepisodes = pd.read_parquet("
                                    f"\"{paths['episodes']}\")\n```"),
    }
    if written.weights is None:
        check = dg.AssetCheckResult(check_name=VERIFIES_CHECK, passed=True, metadata={"note": "no weights published"})
        return dg.MaterializeResult(metadata=metadata, check_results=[check])
    report = verify_weights(weights_response_fields(written.weights), written, signing.key().ss58_address)
    table = md_table(["check", "passed", "detail"],
                     [(c.name, "✓" if c.passed else "✗", c.detail) for c in report.checks])
    check = dg.AssetCheckResult(check_name=VERIFIES_CHECK, passed=report.passed,
                                metadata={"checks": dg.MetadataValue.md(table),
                                          "failed": dg.MetadataValue.json([c.name for c in report.failures])})
    return dg.MaterializeResult(metadata={**metadata, "verification": dg.MetadataValue.md(table)},
                                check_results=[check])


def _row_counts(audit: CycleAudit) -> dict[str, int]:
    return {"commitments": len(audit.commitments),
            "episodes": sum(len(rows) for rows in audit.episodes_by_env.values()),
            "miner_scores": len(audit.miner_scores), "pareto_scores": len(audit.pareto),
            "weights": len(audit.weights.weights) if audit.weights else 0}
