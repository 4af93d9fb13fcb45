"""GET /v1/audit/{cycle_id}: a cycle's audit export, as one ZIP or one Parquet table at a time.

Built from the warehouse on each request (the tables a cycle's `audit_export` asset writes, from the
same code): what a validator's `kinitro verify` recomputes the signed digest and weights from.
"""

from __future__ import annotations

import io
import zipfile
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import Response

from kinitro_dagster.audit.export import TABLES, CycleAudit, audit_tables, cycle_audit_from, parquet_bytes
from kinitro_dagster.warehouse import Warehouse
from weights_api.dependencies import WarehouseDep
from weights_api.routes.common import NOT_FOUND, UNAVAILABLE, CycleIdParam, cycle_by_id

PARQUET = "application/vnd.apache.parquet"
TableParam = Annotated[Literal[TABLES], Path(description="One table of the export.")]  # type: ignore[valid-type]

router = APIRouter(prefix="/v1/audit", tags=["Audit"])


@router.get(
    "/{cycle_id}",
    response_class=Response,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The six tables as <table>.parquet."},
        **NOT_FOUND,
        **UNAVAILABLE,
    },
)
def cycle_export(cycle_id: CycleIdParam, store: WarehouseDep) -> Response:
    """The cycle's audit export: `cycle`, `commitments`, `episodes`, `miner_scores`, `pareto_scores`
    and `weights` as Parquet files in one ZIP (`kinitro verify` reads it)."""
    audit = _audit(store, cycle_id)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:  # Parquet is compressed already
        for name, table in audit_tables(audit).items():
            zf.writestr(f"{name}.parquet", parquet_bytes(table))
    filename = f"kinitro-audit-{audit.cycle.cycle_key}.zip"
    return Response(
        archive.getvalue(),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get(
    "/{cycle_id}/{table}.parquet",
    response_class=Response,
    responses={200: {"content": {PARQUET: {}}, "description": "One table of the export."}, **NOT_FOUND, **UNAVAILABLE},
)
def cycle_export_table(cycle_id: CycleIdParam, table: TableParam, store: WarehouseDep) -> Response:
    """One table of the cycle's audit export (`pandas.read_parquet` reads the body)."""
    audit = _audit(store, cycle_id)
    return Response(parquet_bytes(audit_tables(audit)[table]), media_type=PARQUET)


def _audit(store: Warehouse, cycle_id: str) -> CycleAudit:
    cycle = cycle_by_id(store, cycle_id)
    audit = cycle_audit_from(store, cycle.cycle_key)
    if audit is None:  # removed between the two reads
        raise HTTPException(404, f"no evaluation cycle {cycle_id}; recent ones are listed by /v1/status")
    return audit
