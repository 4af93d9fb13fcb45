"""kinitro verify: a validator's check of published weights, with no database."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from kinitro_dagster.audit.export import CycleAudit


@click.command("verify")
@click.option("--api-url", default="http://localhost:8000", show_default=True, help="The weights API to check.")
@click.option("--signer", required=True, metavar="SS58",
              help="The SS58 address of the backend hotkey you expect to have signed (from its operator).")
@click.option("--block", type=int, default=None, help="Check the weights of the cycle that opened at this block "
              "(default: /v1/weights/latest).")
@click.option("--export", "export_path", type=click.Path(exists=True, path_type=Path), default=None,
              help="Read the cycle's audit export from this directory or ZIP instead of /v1/audit/{cycle_id}.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds per HTTP request.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(api_url: str, signer: str, block: int | None, export_path: Path | None, timeout: float,
           as_json: bool) -> None:  # fmt: skip
    """Check a weights response: its signature against SIGNER, its digest against the cycle's audit
    export, and its weights recomputed from the export with this project's scoring code.

    Exits 0 when every check passes, 1 (naming each failed check) otherwise."""
    import httpx

    from kinitro_dagster.audit.verify import verify_weights

    base = api_url.rstrip("/")
    path = "/v1/weights/latest" if block is None else f"/v1/weights/{block}"
    with httpx.Client(timeout=timeout) as client:
        response = _get(client, base + path).json()
        audit = _export(export_path) if export_path else _audit_from_zip(
            _get(client, f"{base}/v1/audit/{response['cycle_id']}").content, f"{base}/v1/audit/{response['cycle_id']}")
    report = verify_weights(response, audit, signer)
    if as_json:
        click.echo(json.dumps({"cycle_id": report.cycle_id, "passed": report.passed,
                               "checks": [c.__dict__ for c in report.checks]}, indent=2))
    else:
        click.echo(f"cycle {report.cycle_id} (block {response.get('block')}) from {base}{path}")
        for check in report.checks:
            click.echo(f"  {'ok  ' if check.passed else 'FAIL'} {check.name}: {check.detail}")
    if not report.passed:
        raise click.ClickException(f"verification failed: {', '.join(c.name for c in report.failures)}")
    if not as_json:
        click.echo("verified: the weights are the signer's, and they follow from the exported cycle")


def _get(client: Any, url: str) -> Any:
    import httpx

    try:
        response = client.get(url)
    except httpx.HTTPError as error:
        raise click.ClickException(f"cannot fetch {url}: {error}; check --api-url") from error
    if response.status_code != 200:
        raise click.ClickException(f"{url} answered {response.status_code}: {response.text[:300]}")
    return response


def _export(path: Path) -> CycleAudit:
    from kinitro_dagster.audit.export import AuditExportError, load_audit

    try:
        return _audit_from_zip(path.read_bytes(), str(path)) if path.is_file() else load_audit(path)
    except AuditExportError as error:
        raise click.ClickException(str(error)) from error


def _audit_from_zip(data: bytes, source: str) -> CycleAudit:
    from kinitro_dagster.audit.export import TABLES, AuditExportError, audit_from_parquet

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            missing = [t for t in TABLES if f"{t}.parquet" not in names]
            if missing:
                raise AuditExportError(f"{source} is not a cycle's audit export: {', '.join(missing)} missing")
            return audit_from_parquet({t: archive.read(f"{t}.parquet") for t in TABLES})
    except zipfile.BadZipFile as error:
        raise click.ClickException(f"{source} is not a ZIP of the audit export: {error}") from error
    except AuditExportError as error:
        raise click.ClickException(str(error)) from error
