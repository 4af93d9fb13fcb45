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


@click.command("replay")
@click.argument("cycle")
@click.argument("env_id")
@click.argument("uid", type=click.IntRange(min=0))
@click.argument("episode", type=click.IntRange(min=0))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the frames, GIF and thumbnail go "
                   "[default: <state dir>/replays/<cycle>/<env>/<uid>/<episode>].")
@click.option("--database-url", default=None, help="Warehouse URL (default: the scheduler's KINITRO_* setting).")
def replay(cycle: str, env_id: str, uid: int, episode: int, out_dir: Path | None, database_url: str | None) -> None:
    """Re-run EPISODE of UID on ENV_ID in CYCLE from its recorded seed, with the cycle's settings, against
    the same policy snapshot (from the hub cache); write its frames (PNG), a GIF and a thumbnail, and
    compare the outcome with the recorded one. Exits 1 when they differ.

    The policy runs as a local subprocess (not sandboxed), in the runtime its requirements declare."""
    from kinitro_dagster.cli.common import operator_errors, policy_python
    from kinitro_dagster.miners.deployments import DeploymentError
    from kinitro_dagster.miners.hub import SnapshotFetchError, cached_snapshot, fetch_snapshot
    from kinitro_dagster.settings import ExecutorSettings, SchedulerSettings, state_dir
    from kinitro_dagster.sim.registry import validate_env_id
    from kinitro_dagster.sim.replay import ReplayError, check_snapshot, find_recorded, replay_dir, replay_episode
    from kinitro_dagster.warehouse import Warehouse

    executor = ExecutorSettings()
    with operator_errors():
        store = Warehouse(database_url or SchedulerSettings().database_url)
        try:
            env_id = validate_env_id(env_id)
            cycle = cycle.zfill(10) if cycle.isdigit() else cycle
            recorded = find_recorded(store, cycle, env_id, uid, episode)
        except (ValueError, ReplayError) as error:
            raise click.ClickException(str(error)) from error
        finally:
            store.dispose()
    commitment = recorded.commitment
    hub = state_dir() / "hub"
    try:
        snapshot = cached_snapshot(commitment.repo, commitment.revision, cache_dir=hub) or fetch_snapshot(
            commitment.repo, commitment.revision, cache_dir=hub, token=executor.miner_hf_token or None)
    except SnapshotFetchError as error:
        raise click.ClickException(f"cannot fetch the policy snapshot: {error}") from error
    try:
        check_snapshot(recorded, snapshot.content_hash)
    except ReplayError as error:
        raise click.ClickException(str(error)) from error
    out_dir = out_dir or replay_dir(cycle, env_id, uid, episode)
    click.echo(f"replaying cycle {cycle} {env_id} uid {uid} episode {episode} (seed {recorded.episode.seed}) "
               f"against {commitment.repo}@{commitment.revision[:12]}")
    try:
        result = replay_episode(env_id, recorded.configuration, recorded.episode, snapshot.path, out_dir,
                                python=policy_python(snapshot.path, executor, executor.miner_runtimes),
                                warmup_timeout=executor.miner_deployment_warmup_timeout)
    except (DeploymentError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    r, p = result.recorded, result.replayed
    click.echo(f"recorded: {'success' if r.success else 'failure'}, {r.steps} steps, reward {r.total_reward!r}"
               + (f", {r.error_kind}" if r.error_kind else ""))
    click.echo(f"replayed: {'success' if p.success else 'failure'}, {p.steps} steps, reward {p.total_reward!r}"
               + (f", {p.error_kind}" if p.error_kind else ""))
    click.echo(f"frames: {len(result.frames)} PNG under {out_dir / 'frames'}; animation {result.animation}; "
               f"thumbnail {result.thumbnail}")
    if not result.reproduced:
        raise click.ClickException("the replay differs from the record: " + "; ".join(result.mismatches))
    click.echo("reproduced: the replay's outcome equals the recorded one")
