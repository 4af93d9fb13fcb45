"""The audit export of one cycle: six Parquet tables, from the warehouse's records and back.

    cycle          one row: key, block, block hash, status, times, the recorded configuration and
                   the attestation (digest, parts, scoring parameters, signer, signature) as JSON
    commitments    one row per uid read from chain, parsed or not, with the reason when not
    episodes       one row per (env, uid, episode): seed, success, reward, steps, error, latency
    miner_scores   success rate and episode counts per (uid, env)
    pareto_scores  points, weight, front membership and thresholds (JSON) per uid
    weights        the published weight and u16 value per uid (u16 0: rounded away on chain)

An analyst loads a table with one line, `pandas.read_parquet(".../episodes.parquet")`; `kinitro
verify` reads them back into records and recomputes what the cycle published.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from kinitro_dagster.warehouse.records import (
    Attestation,
    CommitmentRecord,
    CommitmentStatus,
    CycleConfiguration,
    CycleRecord,
    CycleStatus,
    EpisodeRecord,
    MinerScoreRecord,
    ParetoScoreRecord,
    WeightsRecord,
)

TIMESTAMP = pa.timestamp("us", tz="UTC")
SCHEMAS: dict[str, pa.Schema] = {
    "cycle": pa.schema([
        ("cycle_key", pa.string()), ("block", pa.int64()), ("block_hash", pa.string()), ("status", pa.string()),
        ("opened_at", TIMESTAMP), ("completed_at", TIMESTAMP), ("n_miners", pa.int64()), ("n_envs", pa.int64()),
        ("configuration", pa.string()),  # CycleConfiguration.to_json() as JSON, null before revision 0003
        ("weights_created_at", TIMESTAMP), ("weights_n_miners", pa.int64()), ("weights_n_envs", pa.int64()),
        ("evaluation_duration_seconds", pa.float64()),
        ("attestation", pa.string()),  # Attestation.to_json() as JSON, null when unsigned
    ]),
    "commitments": pa.schema([
        ("uid", pa.int64()), ("hotkey", pa.string()), ("raw", pa.string()), ("commit_block", pa.int64()),
        ("status", pa.string()), ("repo", pa.string()), ("revision", pa.string()), ("first_seen_block", pa.int64()),
        ("content_hash", pa.string()), ("duplicate_of_uid", pa.int64()), ("reason", pa.string()),
    ]),
    "episodes": pa.schema([
        ("env_id", pa.string()), ("uid", pa.int64()), ("episode", pa.int64()), ("seed", pa.int64()),
        ("success", pa.bool_()), ("total_reward", pa.float64()), ("steps", pa.int64()),
        ("wall_seconds", pa.float64()), ("error_kind", pa.string()), ("error", pa.string()),
        ("latency_p50_ms", pa.float64()), ("latency_p99_ms", pa.float64()),
    ]),
    "miner_scores": pa.schema([
        ("uid", pa.int64()), ("env_id", pa.string()), ("success_rate", pa.float64()),
        ("episodes_completed", pa.int64()), ("episodes_failed", pa.int64()), ("mean_reward", pa.float64()),
    ]),
    "pareto_scores": pa.schema([
        ("uid", pa.int64()), ("on_frontier", pa.bool_()), ("points", pa.float64()), ("weight", pa.float64()),
        ("thresholds", pa.string()),  # {env_id: threshold} as JSON
    ]),
    "weights": pa.schema([("uid", pa.int64()), ("weight", pa.float64()), ("u16", pa.int64())]),
}
TABLES = tuple(SCHEMAS)


class AuditExportError(ValueError):
    """An export that is not one: a table missing, a column of the wrong type, not one cycle row."""


@dataclass(frozen=True)
class CycleAudit:
    """Everything one cycle decided and everything it decided it from."""

    cycle: CycleRecord
    commitments: list[CommitmentRecord]
    episodes_by_env: dict[str, list[EpisodeRecord]]
    miner_scores: list[MinerScoreRecord]
    pareto: list[ParetoScoreRecord]
    weights: WeightsRecord | None  # None: the cycle published no weights


def cycle_audit_from(store: Any, cycle_key: str) -> CycleAudit | None:
    """The audit of `cycle_key` from a `Warehouse`; None when the cycle is unknown."""
    cycle = store.get_cycle(cycle_key)
    if cycle is None:
        return None
    return CycleAudit(cycle=cycle, commitments=store.commitments(cycle_key),
                      episodes_by_env=store.episodes_by_env(cycle_key), miner_scores=store.miner_scores(cycle_key),
                      pareto=store.pareto_scores(cycle_key), weights=store.weights_for_cycle(cycle_key))


# ----------------------------------------------------------------------------- records -> tables


def audit_tables(audit: CycleAudit) -> dict[str, pa.Table]:
    c, w = audit.cycle, audit.weights
    cycle_row = {
        "cycle_key": c.cycle_key, "block": c.block, "block_hash": c.block_hash, "status": str(c.status),
        "opened_at": c.opened_at, "completed_at": c.completed_at, "n_miners": c.n_miners, "n_envs": c.n_envs,
        "configuration": json.dumps(c.config.to_json()) if c.config else None,
        "weights_created_at": w.created_at if w else None, "weights_n_miners": w.n_miners if w else None,
        "weights_n_envs": w.n_envs if w else None, "evaluation_duration_seconds": w.duration_seconds if w else None,
        "attestation": json.dumps(w.attestation.to_json()) if w and w.attestation else None,
    }
    u16 = dict(zip(w.u16_uids, w.u16_values, strict=True)) if w else {}
    rows = {
        "cycle": [cycle_row],
        "commitments": [{**asdict(r), "status": str(r.status)} for r in audit.commitments],
        "episodes": [{"env_id": env, **asdict(r)} for env in sorted(audit.episodes_by_env)
                     for r in audit.episodes_by_env[env]],
        "miner_scores": [asdict(r) for r in audit.miner_scores],
        "pareto_scores": [{**asdict(r), "thresholds": json.dumps(r.thresholds)} for r in audit.pareto],
        "weights": [{"uid": uid, "weight": weight, "u16": u16.get(uid, 0)} for uid, weight in w.weights.items()]
        if w else [],
    }
    return {name: pa.Table.from_pylist(rows[name], schema=SCHEMAS[name]) for name in TABLES}


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def write_audit(audit: CycleAudit, directory: Path) -> dict[str, Path]:
    """The six tables as `<directory>/<table>.parquet`; {table: path}."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, table in audit_tables(audit).items():
        paths[name] = directory / f"{name}.parquet"
        tmp = paths[name].with_suffix(".parquet.tmp")
        pq.write_table(table, tmp)
        tmp.replace(paths[name])  # a reader never sees half a file
    return paths


# ----------------------------------------------------------------------------- tables -> records


def load_audit(directory: Path) -> CycleAudit:
    missing = [name for name in TABLES if not (directory / f"{name}.parquet").is_file()]
    if missing:
        raise AuditExportError(f"{directory} is not a cycle's audit export: {', '.join(missing)} missing")
    return audit_from_tables({name: pq.read_table(directory / f"{name}.parquet") for name in TABLES})


def audit_from_parquet(files: Mapping[str, bytes]) -> CycleAudit:
    """From the tables' Parquet bytes (what the weights API serves)."""
    return audit_from_tables({name: pq.read_table(io.BytesIO(data)) for name, data in files.items()})


def audit_from_tables(tables: Mapping[str, pa.Table]) -> CycleAudit:
    for name, schema in SCHEMAS.items():
        if name not in tables:
            raise AuditExportError(f"the audit export has no {name} table")
        if not tables[name].schema.equals(schema, check_metadata=False):
            raise AuditExportError(f"the {name} table's columns are not the audit export's: "
                                   f"expected {schema.names}, got {tables[name].schema.names}")
    rows = {name: tables[name].to_pylist() for name in TABLES}
    if len(rows["cycle"]) != 1:
        raise AuditExportError(f"the cycle table has {len(rows['cycle'])} rows; an export holds one cycle")
    c = rows["cycle"][0]
    config = CycleConfiguration.from_json(json.loads(c["configuration"])) if c["configuration"] else None
    cycle = CycleRecord(cycle_key=c["cycle_key"], block=c["block"], block_hash=c["block_hash"],
                        opened_at=c["opened_at"], status=CycleStatus(c["status"]), completed_at=c["completed_at"],
                        n_miners=c["n_miners"], n_envs=c["n_envs"], config=config)
    episodes_by_env: dict[str, list[EpisodeRecord]] = {}
    for row in rows["episodes"]:
        episodes_by_env.setdefault(row.pop("env_id"), []).append(_record(EpisodeRecord, row))
    return CycleAudit(
        cycle=cycle,
        commitments=[_record(CommitmentRecord, {**r, "status": CommitmentStatus(r["status"])})
                     for r in rows["commitments"]],
        episodes_by_env=episodes_by_env,
        miner_scores=[_record(MinerScoreRecord, r) for r in rows["miner_scores"]],
        pareto=[_record(ParetoScoreRecord, {**r, "thresholds": json.loads(r["thresholds"])})
                for r in rows["pareto_scores"]],
        weights=_weights(c, rows["weights"]),
    )


def _record[T](cls: type[T], row: Mapping[str, Any]) -> T:
    return cls(**{f.name: row[f.name] for f in fields(cls)})  # type: ignore[arg-type]


def _weights(cycle: Mapping[str, Any], rows: list[dict[str, Any]]) -> WeightsRecord | None:
    if cycle["weights_created_at"] is None:
        return None
    attestation = Attestation.from_json(json.loads(cycle["attestation"])) if cycle["attestation"] else None
    published = [r for r in rows if r["u16"] > 0]
    return WeightsRecord(
        cycle_key=cycle["cycle_key"], block=cycle["block"], weights={r["uid"]: r["weight"] for r in rows},
        u16_uids=[r["uid"] for r in published], u16_values=[r["u16"] for r in published],
        created_at=cycle["weights_created_at"], n_miners=cycle["weights_n_miners"], n_envs=cycle["weights_n_envs"],
        duration_seconds=cycle["evaluation_duration_seconds"], attestation=attestation,
    )
