"""The warehouse schema (DESIGN §3) as SQLAlchemy Core tables.

This module is the source of truth that Alembic migrations are checked against
(`tests/warehouse/test_migrations.py` fails when a migration and these tables disagree).
Every cycle-scoped table references `evaluation_cycles` with ON DELETE CASCADE, so a cycle
row must exist (`Warehouse.upsert_cycle`) before anything is written for it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# Stable constraint names so migrations can refer to them on every dialect.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so the value is stored as naive
    UTC text (which also keeps string ordering chronological) and UTC is attached on the way out.
    Naive datetimes are rejected: their zone is a guess.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"naive datetime {value.isoformat()} given to the warehouse; "
                "pass a timezone-aware one, e.g. datetime.now(UTC)"
            )
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _cycle_fk() -> sa.ForeignKey:
    return sa.ForeignKey("evaluation_cycles.cycle_key", ondelete="CASCADE")


evaluation_cycles = sa.Table(
    "evaluation_cycles",
    metadata,
    sa.Column("cycle_key", sa.String(32), primary_key=True),
    sa.Column("block", sa.BigInteger, nullable=False, index=True),
    sa.Column("block_hash", sa.String(80), nullable=False),
    sa.Column("opened_at", UTCDateTime, nullable=False),
    sa.Column("completed_at", UTCDateTime, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("n_miners", sa.Integer, nullable=False, server_default="0"),
    sa.Column("n_envs", sa.Integer, nullable=False, server_default="0"),
    # CycleConfiguration.to_json(): what the cycle runs with, recorded when it opens.
    sa.Column("config", sa.JSON(none_as_null=True), nullable=True),
    # Bumped by every write of the cycle's scores, 0 while it has none: what the API's cached
    # scores bodies are checked against (one indexed read instead of the 2,048 score rows).
    sa.Column("scores_revision", sa.Integer, nullable=False, server_default="0"),
    sa.CheckConstraint("status IN ('running', 'completed', 'failed')", name="status"),
)

miner_commitments = sa.Table(
    "miner_commitments",
    metadata,
    sa.Column("cycle_key", sa.String(32), _cycle_fk(), primary_key=True),
    sa.Column("uid", sa.Integer, primary_key=True),
    sa.Column("hotkey", sa.String(64), nullable=False),
    sa.Column("raw", sa.Text, nullable=False),
    sa.Column("repo", sa.String(256), nullable=True),
    sa.Column("revision", sa.String(64), nullable=True),
    sa.Column("commit_block", sa.BigInteger, nullable=False),
    sa.Column("first_seen_block", sa.BigInteger, nullable=True),
    sa.Column("content_hash", sa.String(128), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("duplicate_of_uid", sa.Integer, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.CheckConstraint("status IN ('ok', 'unparseable', 'fetch_failed', 'duplicate')", name="status"),
)

# Not cycle-scoped: the first block a (repo, revision) was ever seen is the miner's scoring
# priority, and must survive every later cycle (and a re-run of an old one).
revision_first_seen = sa.Table(
    "revision_first_seen",
    metadata,
    sa.Column("repo", sa.String(256), primary_key=True),
    sa.Column("revision", sa.String(64), primary_key=True),
    sa.Column("first_seen_block", sa.BigInteger, nullable=False),
    sa.Column("content_hash", sa.String(128), nullable=True),
)

# The primary key is the (cycle, env, uid, episode) uniqueness DESIGN asks for and the index
# every read path (a cycle, a cycle's env partition) uses.
episodes = sa.Table(
    "episodes",
    metadata,
    sa.Column("cycle_key", sa.String(32), _cycle_fk(), primary_key=True),
    sa.Column("env_id", sa.String(128), primary_key=True),
    sa.Column("uid", sa.Integer, primary_key=True),
    sa.Column("episode", sa.Integer, primary_key=True),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("success", sa.Boolean, nullable=False),
    sa.Column("total_reward", sa.Float, nullable=False),
    sa.Column("steps", sa.Integer, nullable=False),
    sa.Column("wall_seconds", sa.Float, nullable=False),
    sa.Column("error_kind", sa.String(32), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("latency_p50_ms", sa.Float, nullable=True),
    sa.Column("latency_p99_ms", sa.Float, nullable=True),
)

miner_scores = sa.Table(
    "miner_scores",
    metadata,
    sa.Column("cycle_key", sa.String(32), _cycle_fk(), primary_key=True),
    sa.Column("uid", sa.Integer, primary_key=True),
    sa.Column("env_id", sa.String(128), primary_key=True),
    sa.Column("success_rate", sa.Float, nullable=False),
    sa.Column("episodes_completed", sa.Integer, nullable=False),
    sa.Column("episodes_failed", sa.Integer, nullable=False),
    sa.Column("mean_reward", sa.Float, nullable=False),
)

pareto_scores = sa.Table(
    "pareto_scores",
    metadata,
    sa.Column("cycle_key", sa.String(32), _cycle_fk(), primary_key=True),
    sa.Column("uid", sa.Integer, primary_key=True),
    sa.Column("on_frontier", sa.Boolean, nullable=False),
    sa.Column("points", sa.Float, nullable=False),
    sa.Column("weight", sa.Float, nullable=False),
    sa.Column("thresholds", sa.JSON, nullable=False),  # {env_id: threshold}
)

# `block` is unique and indexed: `/v1/weights/latest` is the row with the highest block and
# `/v1/weights/{block}` an exact match, both one index probe.
weights = sa.Table(
    "weights",
    metadata,
    sa.Column("cycle_key", sa.String(32), _cycle_fk(), primary_key=True),
    sa.Column("block", sa.BigInteger, nullable=False, unique=True),
    sa.Column("weights", sa.JSON, nullable=False),  # {"<uid>": weight}
    sa.Column("u16_uids", sa.JSON, nullable=False),
    sa.Column("u16_values", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False, index=True),
    sa.Column("n_miners", sa.Integer, nullable=False),
    sa.Column("n_envs", sa.Integer, nullable=False),
    sa.Column("duration_seconds", sa.Float, nullable=False),
    # Attestation.to_json(): digest, parts, scoring parameters, signer and signature.
    sa.Column("attestation", sa.JSON(none_as_null=True), nullable=True),
)

# One row: the latest chain head the cycle sensor saw, so `/v1/status` can report the real
# current block instead of the last cycle's.
chain_head = sa.Table(
    "chain_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("block", sa.BigInteger, nullable=False),
    sa.Column("seen_at", UTCDateTime, nullable=False),
    sa.CheckConstraint("id = 1", name="single_row"),
)
