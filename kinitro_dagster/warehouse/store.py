"""`Warehouse`: every read and write of the warehouse tables, records in and records out.

One class for the Dagster assets (writers) and the weights API (reader). Writes are one
transaction each and idempotent where a Dagster partition may be re-run. On SQLite, write
transactions start with `BEGIN IMMEDIATE` and every connection waits on a busy lock (WAL
journal, busy_timeout), so parallel runs of one Dagster instance queue instead of failing
with "database is locked".
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import StaticPool

from kinitro_dagster.warehouse import schema
from kinitro_dagster.warehouse import tables as t
from kinitro_dagster.warehouse.errors import first_error_line
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
    ScoresVersion,
    WeightsRecord,
)

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 30.0
POSTGRES_CONNECT_TIMEOUT_S = 5
URL_HELP = "expected sqlite:///path/to/warehouse.db or postgresql://user:password@host:port/dbname"


class WarehouseUnavailable(RuntimeError):
    """The database cannot be used: bad URL, unreachable server, refused login, missing schema."""


class WarehouseSchemaMissing(WarehouseUnavailable):
    """Reachable, but the tables are not there (or not at the code's revision)."""


class CycleNotFound(LookupError):
    """A write named a cycle that `upsert_cycle` never recorded."""


@dataclass(frozen=True)
class WarehouseSummary:
    """What `kinitro db status` prints."""

    schema_revision: str | None
    head_revision: str
    cycles_by_status: dict[str, int]
    unique_miners: int
    latest_completed: CycleRecord | None
    running: CycleRecord | None
    latest_weights: WeightsRecord | None

    @property
    def total_cycles(self) -> int:
        return sum(self.cycles_by_status.values())


# --------------------------------------------------------------------------- URLs and engines


def normalize_url(url: str) -> sa.URL:
    """Parse a database URL; PostgreSQL URLs are pointed at psycopg2 (the driver we ship).

    A bare `postgresql://` or `postgres://` and the guide's `postgresql+asyncpg://` all become
    `postgresql+psycopg2://`: the warehouse is synchronous.
    """
    try:
        parsed = sa.make_url(url.strip())
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise WarehouseUnavailable(f"database URL {url!r} is not a valid URL; {URL_HELP}") from exc
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg2")
    if backend == "sqlite":
        return parsed
    raise WarehouseUnavailable(
        f"database URL {safe_url(parsed)} uses {backend!r}; the warehouse supports SQLite and PostgreSQL ({URL_HELP})"
    )


def safe_url(url: sa.URL | str) -> str:
    """The URL with its password hidden, for messages and logs."""
    if isinstance(url, str):
        try:
            url = sa.make_url(url)
        except (sa.exc.ArgumentError, ValueError):
            return "<unparseable URL>"
    return url.render_as_string(hide_password=True)


def _is_sqlite_memory(url: sa.URL) -> bool:
    return url.database in (None, "", ":memory:") or "mode=memory" in str(url.query)


def _create_engine(url: sa.URL) -> sa.Engine:
    if url.get_backend_name() == "sqlite":
        engine = _create_sqlite_engine(url)
    else:
        connect_args: dict[str, Any] = {}
        if "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_S
        engine = sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    _guard_against_fork(engine)
    return engine


def _guard_against_fork(engine: sa.Engine) -> None:
    """Never hand a forked child (a Dagster run worker, a rollout fork server) its parent's
    pooled connections: two processes on one socket corrupt both sessions. SQLAlchemy's recipe:
    a checkout in another process discards the connection and opens a fresh one."""

    @event.listens_for(engine, "connect")
    def _remember_pid(_dbapi_connection: Any, record: Any) -> None:
        record.info["pid"] = os.getpid()

    @event.listens_for(engine, "checkout")
    def _check_pid(_dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if record.info.get("pid") != os.getpid():
            record.dbapi_connection = proxy.dbapi_connection = None
            raise sa.exc.DisconnectionError("connection was opened by another process; reconnecting")


def _create_sqlite_engine(url: sa.URL) -> sa.Engine:
    memory = _is_sqlite_memory(url)
    if not memory and url.database and not url.database.startswith("file:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}}
    if memory:
        kwargs["poolclass"] = StaticPool  # one shared connection, or every checkout is a new empty db
    engine = sa.create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's "begin" event below (pysqlite's own
        # implicit BEGIN cannot be made IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        if not memory:
            _enable_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # A deferred transaction that reads, then writes, can fail with SQLITE_BUSY without
        # waiting; taking the write lock up front makes concurrent writers queue instead.
        immediate = conn.get_execution_options().get("kinitro_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL (persistent, so usually a no-op read).

    Changing the journal mode needs an exclusive lock and SQLite does not call the busy handler
    for it, so parallel first connections to a new file retry here instead of failing.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def explain_error(url: sa.URL, exc: BaseException) -> WarehouseUnavailable | None:
    """Turn a driver error an operator can fix into a message saying what to check."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    first = first_error_line(exc) or type(exc).__name__
    low = text.lower()
    where = safe_url(url)
    if url.get_backend_name() == "sqlite":
        if "unable to open database file" in low:
            return WarehouseUnavailable(
                f"cannot open SQLite database {url.database!r} ({where}): check that its directory "
                "exists and is writable by this user"
            )
        if "no such table" in low:
            return WarehouseSchemaMissing(
                f"warehouse tables missing in {where} ({first}); run `kinitro db init --database-url ...`"
            )
        return None
    host = f"{url.host or 'localhost'}:{url.port or 5432}"
    if (
        "password authentication failed" in low
        or "no password supplied" in low
        or re.search(r'role ".*" does not exist', low)
    ):
        return WarehouseUnavailable(
            f"PostgreSQL at {host} refused user {url.username!r} ({first}); check the user and "
            "password in the database URL"
        )
    if re.search(r'database ".*" does not exist', low):
        return WarehouseUnavailable(
            f"database {url.database!r} does not exist on {host}; create it with `kinitro db create --database-url ...`"
        )
    if re.search(r'relation ".*" does not exist', low):
        return WarehouseSchemaMissing(
            f"warehouse tables missing in {where} ({first}); run `kinitro db init --database-url ...`"
        )
    unreachable = (
        "could not connect",
        "connection refused",
        "could not translate host name",
        "timeout expired",
        "no route to host",
        "server closed the connection",
        "connection to server",
        "name or service not known",
    )
    if any(marker in low for marker in unreachable):
        return WarehouseUnavailable(
            f"cannot reach PostgreSQL at {host} ({first}); check that the server is running and "
            f"the host and port in the database URL ({where})"
        )
    return None


# --------------------------------------------------------------------------- row <-> record


def _cycle(row: sa.Row) -> CycleRecord:
    return CycleRecord(
        cycle_key=row.cycle_key,
        block=row.block,
        block_hash=row.block_hash,
        opened_at=row.opened_at,
        status=CycleStatus(row.status),
        completed_at=row.completed_at,
        n_miners=row.n_miners,
        n_envs=row.n_envs,
        config=CycleConfiguration.from_json(row.config) if row.config else None,
    )


def _cycle_values(cycle: CycleRecord) -> dict[str, Any]:
    return {
        "cycle_key": cycle.cycle_key,
        "block": cycle.block,
        "block_hash": cycle.block_hash,
        "opened_at": cycle.opened_at,
        "completed_at": cycle.completed_at,
        "status": CycleStatus(cycle.status).value,
        "n_miners": cycle.n_miners,
        "n_envs": cycle.n_envs,
        "config": cycle.config.to_json() if cycle.config else None,
    }


def _record_columns(table: sa.Table, record: type) -> list[sa.Column[Any]]:
    """`table`'s columns named like `record`'s fields, in field order, so a row selected with them
    is read by position. Reading a Row by name costs about a microsecond a field (SQLAlchemy 2.1):
    10 ms for one cycle's 2,048 miner scores, most of an API request."""
    return [table.c[f.name] for f in dataclasses.fields(record)]


COMMITMENT_COLUMNS = _record_columns(t.miner_commitments, CommitmentRecord)
MINER_SCORE_COLUMNS = _record_columns(t.miner_scores, MinerScoreRecord)
PARETO_COLUMNS = _record_columns(t.pareto_scores, ParetoScoreRecord)
# env_id first: episodes_by_env groups on it (a cycle is ~100k rows at 256 miners x 8 envs x 50).
EPISODE_COLUMNS = [t.episodes.c.env_id, *_record_columns(t.episodes, EpisodeRecord)]


def _commitment(row: sa.Row) -> CommitmentRecord:  # selected with COMMITMENT_COLUMNS
    uid, hotkey, raw, commit_block, status, *rest = row
    return CommitmentRecord(uid, hotkey, raw, commit_block, CommitmentStatus(status), *rest)


def _commitment_values(cycle_key: str, c: CommitmentRecord) -> dict[str, Any]:
    return {
        "cycle_key": cycle_key,
        "uid": c.uid,
        "hotkey": c.hotkey,
        "raw": c.raw,
        "repo": c.repo,
        "revision": c.revision,
        "commit_block": c.commit_block,
        "first_seen_block": c.first_seen_block,
        "content_hash": c.content_hash,
        "status": CommitmentStatus(c.status).value,
        "duplicate_of_uid": c.duplicate_of_uid,
        "reason": c.reason,
    }


def _episode(row: sa.Row) -> EpisodeRecord:  # selected with EPISODE_COLUMNS
    _env_id, uid, episode, seed, success, *rest = row
    return EpisodeRecord(uid, episode, seed, bool(success), *rest)


def _episode_values(cycle_key: str, env_id: str, e: EpisodeRecord) -> dict[str, Any]:
    return {
        "cycle_key": cycle_key,
        "env_id": env_id,
        "uid": e.uid,
        "episode": e.episode,
        "seed": e.seed,
        "success": bool(e.success),
        "total_reward": float(e.total_reward),
        "steps": e.steps,
        "wall_seconds": float(e.wall_seconds),
        "error_kind": e.error_kind,
        "error": e.error,
        "latency_p50_ms": e.latency_p50_ms,
        "latency_p99_ms": e.latency_p99_ms,
    }


def _miner_score(row: sa.Row) -> MinerScoreRecord:  # selected with MINER_SCORE_COLUMNS
    return MinerScoreRecord(*row)


def _pareto(row: sa.Row) -> ParetoScoreRecord:  # selected with PARETO_COLUMNS
    uid, on_frontier, points, weight, thresholds = row
    return ParetoScoreRecord(
        uid, bool(on_frontier), points, weight, {str(k): float(v) for k, v in (thresholds or {}).items()}
    )


def _weights(row: sa.Row) -> WeightsRecord:
    return WeightsRecord(
        cycle_key=row.cycle_key,
        block=row.block,
        weights={int(uid): float(w) for uid, w in row.weights.items()},
        u16_uids=[int(u) for u in row.u16_uids],
        u16_values=[int(v) for v in row.u16_values],
        created_at=row.created_at,
        n_miners=row.n_miners,
        n_envs=row.n_envs,
        duration_seconds=row.duration_seconds,
        attestation=Attestation.from_json(row.attestation) if row.attestation else None,
    )


# --------------------------------------------------------------------------- the warehouse


class Warehouse:
    """The warehouse at one database URL. Thread-safe; share one per process."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self._engine = _create_engine(self.url)
        # Same pool; the option makes SQLite writers take the write lock at BEGIN.
        self._write_engine = self._engine.execution_options(kinitro_write=True)

    def __repr__(self) -> str:
        return f"Warehouse({safe_url(self.url)!r})"

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @property
    def engine(self) -> sa.Engine:
        return self._engine

    def dispose(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        try:
            with self._engine.connect() as conn:
                yield conn
        except sa.exc.DBAPIError as exc:
            self._raise_explained(exc)

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        try:
            with self._write_engine.begin() as conn:
                yield conn
        except sa.exc.DBAPIError as exc:
            self._raise_explained(exc)

    def _raise_explained(self, exc: sa.exc.DBAPIError) -> None:
        explained = explain_error(self.url, exc)
        if explained is None:
            raise exc
        raise explained from exc

    def _insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT, which has ON CONFLICT on both PostgreSQL and SQLite."""
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    @staticmethod
    def _lock(conn: sa.Connection, *scope: str) -> None:
        """Serialize delete+insert replacements of one scope until the transaction ends.

        Under PostgreSQL's READ COMMITTED two racing replacements of the same partition (a
        retried run and the original) would both delete nothing and both insert, and one would
        fail on the primary key. SQLite needs nothing: `BEGIN IMMEDIATE` already serializes.
        """
        if conn.dialect.name != "postgresql":
            return
        digest = hashlib.blake2b("\x1f".join(scope).encode(), digest_size=8).digest()
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": int.from_bytes(digest, "big", signed=True)})

    @staticmethod
    def _require_cycle(conn: sa.Connection, cycle_key: str) -> None:
        found = conn.execute(
            sa.select(t.evaluation_cycles.c.cycle_key).where(t.evaluation_cycles.c.cycle_key == cycle_key)
        ).first()
        if found is None:
            raise CycleNotFound(f"cycle {cycle_key!r} is not in the warehouse; record it with upsert_cycle() first")

    # ----------------------------------------------------------------------- lifecycle

    def ping(self) -> None:
        """Raise WarehouseUnavailable, saying what to check, unless the database answers."""
        try:
            with self._engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            explained = explain_error(self.url, exc)
            if explained is not None:
                raise explained from exc
            raise WarehouseUnavailable(
                f"database {safe_url(self.url)} is unavailable ({type(exc).__name__}: {first_error_line(exc)}); "
                "check the database URL and that the server is running"
            ) from exc

    def migrate(self) -> None:
        """Upgrade the schema to the code's head revision. Idempotent and safe to run concurrently."""
        self.ping()
        with self._write() as conn:
            before = schema.current_revision(conn)
            schema.upgrade_to_head(conn)
            after = schema.current_revision(conn)
        if before != after:
            log.info("warehouse migrated", extra={"url": safe_url(self.url), "from": before, "to": after})

    def schema_revision(self) -> str | None:
        with self._read() as conn:
            return schema.current_revision(conn)

    def check_schema(self) -> None:
        """Raise WarehouseSchemaMissing unless the database is at the code's head revision."""
        current, head = self.schema_revision(), schema.head_revision()
        if current != head:
            raise WarehouseSchemaMissing(
                f"warehouse schema in {safe_url(self.url)} is at {current or 'nothing'}, the code expects "
                f"{head}; run `kinitro db init --database-url ...`"
            )

    def reset(self) -> None:
        """Drop every warehouse table and the migration history. Destroys all data."""
        with self._write() as conn:
            t.metadata.drop_all(conn, checkfirst=True)
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        log.info("warehouse reset: all tables dropped", extra={"url": safe_url(self.url)})

    # ----------------------------------------------------------------------- cycles

    def upsert_cycle(self, cycle: CycleRecord) -> None:
        """Insert the cycle, or update it keeping the configuration it was first recorded with:
        re-opening a cycle from a process with other settings does not change what it ran with."""
        values = _cycle_values(cycle)
        stmt = self._insert(t.evaluation_cycles).values(values)
        updates: dict[str, Any] = {k: v for k, v in values.items() if k not in ("cycle_key", "config")}
        updates["config"] = sa.func.coalesce(t.evaluation_cycles.c.config, stmt.excluded.config)
        stmt = stmt.on_conflict_do_update(index_elements=[t.evaluation_cycles.c.cycle_key], set_=updates)
        with self._write() as conn:
            conn.execute(stmt)

    def complete_cycle(self, cycle_key: str, status: CycleStatus, completed_at: datetime, n_miners: int) -> None:
        stmt = (
            sa.update(t.evaluation_cycles)
            .where(t.evaluation_cycles.c.cycle_key == cycle_key)
            .values(status=CycleStatus(status).value, completed_at=completed_at, n_miners=n_miners)
        )
        with self._write() as conn:
            if conn.execute(stmt).rowcount == 0:
                raise CycleNotFound(f"cannot complete cycle {cycle_key!r}: it is not in the warehouse")

    def get_cycle(self, cycle_key: str) -> CycleRecord | None:
        with self._read() as conn:
            row = conn.execute(
                sa.select(t.evaluation_cycles).where(t.evaluation_cycles.c.cycle_key == cycle_key)
            ).first()
        return _cycle(row) if row else None

    def cycle_at_block(self, block: int) -> CycleRecord | None:
        with self._read() as conn:
            row = conn.execute(
                sa.select(t.evaluation_cycles)
                .where(t.evaluation_cycles.c.block == block)
                .order_by(t.evaluation_cycles.c.cycle_key)
                .limit(1)
            ).first()
        return _cycle(row) if row else None

    def latest_cycle(self, status: CycleStatus | None = None) -> CycleRecord | None:
        """The cycle with the highest opening block (optionally only those with `status`)."""
        stmt = sa.select(t.evaluation_cycles).order_by(t.evaluation_cycles.c.block.desc()).limit(1)
        if status is not None:
            stmt = stmt.where(t.evaluation_cycles.c.status == CycleStatus(status).value)
        with self._read() as conn:
            row = conn.execute(stmt).first()
        return _cycle(row) if row else None

    def list_cycles(self, limit: int = 50) -> list[CycleRecord]:
        """Newest first."""
        stmt = sa.select(t.evaluation_cycles).order_by(t.evaluation_cycles.c.block.desc()).limit(limit)
        with self._read() as conn:
            return [_cycle(row) for row in conn.execute(stmt)]

    def count_cycles(self) -> dict[str, int]:
        """{status: number of cycles}."""
        c = t.evaluation_cycles.c
        with self._read() as conn:
            rows = conn.execute(sa.select(c.status, sa.func.count()).group_by(c.status))
            return {status: int(n) for status, n in rows}

    def _latest_cycle_having(self, table: sa.Table) -> CycleRecord | None:
        cycles = t.evaluation_cycles
        has_rows = sa.exists().where(table.c.cycle_key == cycles.c.cycle_key)
        stmt = sa.select(cycles).where(has_rows).order_by(cycles.c.block.desc()).limit(1)
        with self._read() as conn:
            row = conn.execute(stmt).first()
        return _cycle(row) if row else None

    def latest_cycle_with_commitments(self) -> CycleRecord | None:
        return self._latest_cycle_having(t.miner_commitments)

    def latest_scored_cycle(self) -> CycleRecord | None:
        """The newest cycle that has miner scores (what `/v1/scores/latest` serves)."""
        c = t.evaluation_cycles.c
        stmt = sa.select(t.evaluation_cycles).where(c.scores_revision > 0).order_by(c.block.desc()).limit(1)
        with self._read() as conn:
            row = conn.execute(stmt).first()
        return _cycle(row) if row else None

    def scores_version(self, cycle_key: str | None = None) -> ScoresVersion | None:
        """The version of `cycle_key`'s scores, or of the newest scored cycle's when None; None
        when there are no such scores. One indexed read: what cached score bodies check."""
        c = t.evaluation_cycles.c
        stmt = sa.select(c.cycle_key, c.scores_revision, c.status, c.completed_at).where(c.scores_revision > 0)
        stmt = stmt.where(c.cycle_key == cycle_key) if cycle_key else stmt.order_by(c.block.desc()).limit(1)
        with self._read() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            return None
        return ScoresVersion(row.cycle_key, row.scores_revision, CycleStatus(row.status), row.completed_at)

    # ----------------------------------------------------------------------- chain head

    def record_chain_head(self, block: int, seen_at: datetime) -> None:
        """Remember the chain head the sensor last saw (for `/v1/status`)."""
        values = {"id": 1, "block": block, "seen_at": seen_at}
        stmt = self._insert(t.chain_head).values(values)
        stmt = stmt.on_conflict_do_update(index_elements=[t.chain_head.c.id], set_=values)
        with self._write() as conn:
            conn.execute(stmt)

    def chain_head(self) -> tuple[int, datetime] | None:
        with self._read() as conn:
            row = conn.execute(sa.select(t.chain_head.c.block, t.chain_head.c.seen_at)).first()
        return (row.block, row.seen_at) if row else None

    # ----------------------------------------------------------------------- commitments

    def replace_commitments(self, cycle_key: str, rows: Sequence[CommitmentRecord]) -> None:
        table = t.miner_commitments
        with self._write() as conn:
            self._lock(conn, "commitments", cycle_key)
            self._require_cycle(conn, cycle_key)
            conn.execute(sa.delete(table).where(table.c.cycle_key == cycle_key))
            if rows:
                conn.execute(table.insert(), [_commitment_values(cycle_key, r) for r in rows])

    def commitments(self, cycle_key: str) -> list[CommitmentRecord]:
        table = t.miner_commitments
        stmt = sa.select(*COMMITMENT_COLUMNS).where(table.c.cycle_key == cycle_key).order_by(table.c.uid)
        with self._read() as conn:
            return [_commitment(row) for row in conn.execute(stmt)]

    def count_commitments(self, cycle_key: str, status: CommitmentStatus | None = None) -> int:
        """How many commitments the cycle read (only those with `status`, if given): one COUNT."""
        c = t.miner_commitments.c
        stmt = sa.select(sa.func.count()).where(c.cycle_key == cycle_key)
        if status is not None:
            stmt = stmt.where(c.status == CommitmentStatus(status).value)
        with self._read() as conn:
            return int(conn.execute(stmt).scalar_one())

    def unique_miners(self) -> int:
        """Distinct hotkeys that ever had a valid commitment."""
        c = t.miner_commitments.c
        stmt = sa.select(sa.func.count(sa.distinct(c.hotkey))).where(c.status == CommitmentStatus.OK.value)
        with self._read() as conn:
            return int(conn.execute(stmt).scalar_one())

    # ----------------------------------------------------------------------- first seen

    def first_seen(self, repo: str, revision: str) -> tuple[int, str | None] | None:
        table = t.revision_first_seen
        stmt = sa.select(table.c.first_seen_block, table.c.content_hash).where(
            table.c.repo == repo, table.c.revision == revision
        )
        with self._read() as conn:
            row = conn.execute(stmt).first()
        return (row.first_seen_block, row.content_hash) if row else None

    def record_first_seen(self, repo: str, revision: str, block: int, content_hash: str | None) -> int:
        """Record that (repo, revision) was seen at `block`; return the stored first-seen block.

        The stored block only ever moves earlier (a re-run of an older cycle may reveal an
        earlier sighting), never later, so a miner's priority cannot be lost by re-committing
        the same revision. A missing content hash is filled in; a present one is kept. One atomic
        upsert, safe when parallel runs record the same revision at once.
        """
        table = t.revision_first_seen
        stmt = self._insert(table).values(
            repo=repo, revision=revision, first_seen_block=block, content_hash=content_hash
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.repo, table.c.revision],
            set_={
                "first_seen_block": sa.case(
                    (stmt.excluded.first_seen_block < table.c.first_seen_block, stmt.excluded.first_seen_block),
                    else_=table.c.first_seen_block,
                ),
                "content_hash": sa.func.coalesce(table.c.content_hash, stmt.excluded.content_hash),
            },
        )
        with self._write() as conn:
            conn.execute(stmt)
            stored = conn.execute(
                sa.select(table.c.first_seen_block).where(table.c.repo == repo, table.c.revision == revision)
            ).scalar_one()
        return int(stored)

    # ----------------------------------------------------------------------- episodes

    def replace_episodes(self, cycle_key: str, env_id: str, rows: Sequence[EpisodeRecord]) -> None:
        """Replace the (cycle, env) partition's episodes in one transaction (re-runs never duplicate)."""
        table = t.episodes
        with self._write() as conn:
            self._lock(conn, "episodes", cycle_key, env_id)
            self._require_cycle(conn, cycle_key)
            conn.execute(sa.delete(table).where(table.c.cycle_key == cycle_key, table.c.env_id == env_id))
            if rows:
                conn.execute(table.insert(), [_episode_values(cycle_key, env_id, r) for r in rows])

    def _episode_rows(self, cycle_key: str, env_id: str | None) -> list[sa.Row]:
        table = t.episodes
        stmt = (
            sa.select(*EPISODE_COLUMNS)
            .where(table.c.cycle_key == cycle_key)
            .order_by(table.c.env_id, table.c.uid, table.c.episode)
        )
        if env_id is not None:
            stmt = stmt.where(table.c.env_id == env_id)
        with self._read() as conn:
            return list(conn.execute(stmt))

    def episodes(self, cycle_key: str, env_id: str | None = None) -> list[EpisodeRecord]:
        """Sorted by (env, uid, episode)."""
        return [_episode(row) for row in self._episode_rows(cycle_key, env_id)]

    def episodes_by_env(self, cycle_key: str) -> dict[str, list[EpisodeRecord]]:
        """{env_id: episodes sorted by (uid, episode)}, envs in sorted order."""
        grouped: dict[str, list[EpisodeRecord]] = {}
        for row in self._episode_rows(cycle_key, None):
            grouped.setdefault(row[0], []).append(_episode(row))
        return grouped

    def episode_counts(self, cycle_key: str) -> dict[str, int]:
        """{env_id: number of episode rows} for a cycle (cheap, for checks and dashboards)."""
        c = t.episodes.c
        stmt = sa.select(c.env_id, sa.func.count()).where(c.cycle_key == cycle_key).group_by(c.env_id)
        with self._read() as conn:
            return {env_id: int(n) for env_id, n in conn.execute(stmt)}

    # ----------------------------------------------------------------------- scores

    def replace_scores(
        self,
        cycle_key: str,
        miner_scores: Sequence[MinerScoreRecord],
        pareto: Sequence[ParetoScoreRecord],
    ) -> None:
        ms, ps = t.miner_scores, t.pareto_scores
        with self._write() as conn:
            self._lock(conn, "scores", cycle_key)
            self._require_cycle(conn, cycle_key)
            conn.execute(sa.delete(ms).where(ms.c.cycle_key == cycle_key))
            conn.execute(sa.delete(ps).where(ps.c.cycle_key == cycle_key))
            if miner_scores:
                conn.execute(
                    ms.insert(),
                    [
                        {
                            "cycle_key": cycle_key,
                            "uid": s.uid,
                            "env_id": s.env_id,
                            "success_rate": float(s.success_rate),
                            "episodes_completed": s.episodes_completed,
                            "episodes_failed": s.episodes_failed,
                            "mean_reward": float(s.mean_reward),
                        }
                        for s in miner_scores
                    ],
                )
            if pareto:
                conn.execute(
                    ps.insert(),
                    [
                        {
                            "cycle_key": cycle_key,
                            "uid": p.uid,
                            "on_frontier": bool(p.on_frontier),
                            "points": float(p.points),
                            "weight": float(p.weight),
                            "thresholds": {str(k): float(v) for k, v in p.thresholds.items()},
                        }
                        for p in pareto
                    ],
                )
            cycles = t.evaluation_cycles
            revision = cycles.c.scores_revision + 1 if miner_scores else 0
            conn.execute(sa.update(cycles).where(cycles.c.cycle_key == cycle_key).values(scores_revision=revision))

    def miner_scores(self, cycle_key: str) -> list[MinerScoreRecord]:
        """Sorted by (uid, env)."""
        table = t.miner_scores
        stmt = (
            sa.select(*MINER_SCORE_COLUMNS).where(table.c.cycle_key == cycle_key).order_by(table.c.uid, table.c.env_id)
        )
        with self._read() as conn:
            return [_miner_score(row) for row in conn.execute(stmt)]

    def success_rates(self, cycle_key: str) -> list[tuple[int, str, float]]:
        """(uid, env_id, success_rate) of every miner score of a cycle, sorted by (uid, env), as
        plain tuples: what the API reads per request (2,048 rows at 256 miners × 8 envs), without
        a record per row. Means are left to the caller: SQL AVG sums naively (SQLite < 3.43,
        PostgreSQL), so it can differ from Python's compensated `sum` in the last digits."""
        c = t.miner_scores.c
        stmt = sa.select(c.uid, c.env_id, c.success_rate).where(c.cycle_key == cycle_key).order_by(c.uid, c.env_id)
        with self._read() as conn:
            return [(uid, env_id, rate) for uid, env_id, rate in conn.execute(stmt).all()]

    def success_history(self, cycles: int, up_to: str | None = None) -> list[tuple[int, int, str, float]]:
        """(block, uid, env_id, success_rate) of the last `cycles` scored cycles (up to and including
        cycle key `up_to`, if given), oldest first: one query, for per-miner history plots."""
        c, cy = t.miner_scores.c, t.evaluation_cycles.c
        recent = sa.select(c.cycle_key).distinct()
        if up_to is not None:
            recent = recent.where(c.cycle_key <= up_to)
        recent = recent.order_by(c.cycle_key.desc()).limit(cycles).subquery()
        stmt = (sa.select(cy.block, c.uid, c.env_id, c.success_rate)
                .join(t.evaluation_cycles, cy.cycle_key == c.cycle_key)
                .where(c.cycle_key.in_(sa.select(recent.c.cycle_key)))
                .order_by(cy.block, c.uid, c.env_id))  # fmt: skip
        with self._read() as conn:
            return [(block, uid, env_id, rate) for block, uid, env_id, rate in conn.execute(stmt).all()]

    def pareto_scores(self, cycle_key: str) -> list[ParetoScoreRecord]:
        """Sorted by uid."""
        table = t.pareto_scores
        stmt = sa.select(*PARETO_COLUMNS).where(table.c.cycle_key == cycle_key).order_by(table.c.uid)
        with self._read() as conn:
            return [_pareto(row) for row in conn.execute(stmt)]

    # ----------------------------------------------------------------------- weights

    def write_weights(self, record: WeightsRecord) -> None:
        """Replace the cycle's weights row."""
        table = t.weights
        values = {
            "cycle_key": record.cycle_key,
            "block": record.block,
            "weights": {str(int(uid)): float(w) for uid, w in record.weights.items()},
            "u16_uids": [int(u) for u in record.u16_uids],
            "u16_values": [int(v) for v in record.u16_values],
            "created_at": record.created_at,
            "n_miners": record.n_miners,
            "n_envs": record.n_envs,
            "duration_seconds": float(record.duration_seconds),
            "attestation": record.attestation.to_json() if record.attestation else None,
        }
        with self._write() as conn:
            self._lock(conn, "weights")  # one writer at a time: the block uniqueness check reads others' rows
            self._require_cycle(conn, record.cycle_key)
            clash = conn.execute(
                sa.select(table.c.cycle_key).where(table.c.block == record.block, table.c.cycle_key != record.cycle_key)
            ).scalar()
            if clash is not None:
                raise ValueError(
                    f"weights for block {record.block} already belong to cycle {clash!r}; "
                    f"cycle {record.cycle_key!r} cannot publish at the same block"
                )
            conn.execute(sa.delete(table).where(table.c.cycle_key == record.cycle_key))
            conn.execute(table.insert().values(values))

    def weights_for_cycle(self, cycle_key: str) -> WeightsRecord | None:
        return self._one_weights(t.weights.c.cycle_key == cycle_key)

    def weights_at_block(self, block: int) -> WeightsRecord | None:
        """Exactly the weights published for `block` (as Kinitro's API does)."""
        return self._one_weights(t.weights.c.block == block)

    def latest_weights(self) -> WeightsRecord | None:
        """The weights of the newest cycle (highest block), as validators should set them.

        Ordering by block rather than write time means re-materializing an old cycle does not
        make validators roll back to its weights.
        """
        return self._one_weights(None)

    def latest_weights_version(self) -> tuple[str, datetime] | None:
        """(cycle_key, created_at) of `latest_weights()`: one index probe, for cache validation."""
        table = t.weights
        stmt = sa.select(table.c.cycle_key, table.c.created_at).order_by(table.c.block.desc()).limit(1)
        with self._read() as conn:
            row = conn.execute(stmt).first()
        return (row.cycle_key, row.created_at) if row else None

    def weights_durations(self) -> list[float]:
        """Every published cycle's evaluation duration (seconds), for the metrics histogram."""
        with self._read() as conn:
            return [float(d) for d in conn.execute(sa.select(t.weights.c.duration_seconds)).scalars()]

    def _one_weights(self, where: sa.ColumnElement[bool] | None) -> WeightsRecord | None:
        stmt = sa.select(t.weights).order_by(t.weights.c.block.desc()).limit(1)
        if where is not None:
            stmt = stmt.where(where)
        with self._read() as conn:
            row = conn.execute(stmt).first()
        return _weights(row) if row else None

    # ----------------------------------------------------------------------- status

    def summary(self) -> WarehouseSummary:
        """Everything `kinitro db status` shows, in one call."""
        revision = self.schema_revision()
        head = schema.head_revision()
        if revision is None:
            return WarehouseSummary(revision, head, {}, 0, None, None, None)
        return WarehouseSummary(
            schema_revision=revision,
            head_revision=head,
            cycles_by_status=self.count_cycles(),
            unique_miners=self.unique_miners(),
            latest_completed=self.latest_cycle(CycleStatus.COMPLETED),
            running=self.latest_cycle(CycleStatus.RUNNING),
            latest_weights=self.latest_weights(),
        )


# --------------------------------------------------------------------------- database creation


def create_database(url: str) -> bool:
    """Create the database a URL names if it is missing; True when it was created.

    PostgreSQL: connects to the server's `postgres` maintenance database with the URL's
    credentials and runs CREATE DATABASE (the user needs CREATEDB). SQLite: creates the file and
    its directory.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        existed = not _is_sqlite_memory(parsed) and Path(parsed.database or "").expanduser().exists()
        store = Warehouse(url)
        try:
            store.ping()  # opening the file creates it
        finally:
            store.dispose()
        return not existed
    name = parsed.database
    if not name:
        raise WarehouseUnavailable(f"database URL {safe_url(parsed)} names no database; {URL_HELP}")
    admin_engine = _create_engine(parsed.set(database="postgres"))
    admin = admin_engine.execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}).first()
            if exists:
                return False
            conn.exec_driver_sql(f"CREATE DATABASE {conn.dialect.identifier_preparer.quote(name)}")
            log.info("database created", extra={"url": safe_url(parsed)})
            return True
    except sa.exc.DBAPIError as exc:
        explained = explain_error(parsed.set(database="postgres"), exc)
        if explained is not None:
            raise explained from exc
        raise WarehouseUnavailable(
            f"cannot create database {name!r} on {safe_url(parsed)}: {first_error_line(exc)}"
        ) from exc
    finally:
        admin_engine.dispose()
