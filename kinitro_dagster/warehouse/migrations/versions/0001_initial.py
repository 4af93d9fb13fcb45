"""Initial warehouse schema (DESIGN §3).

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _cycle_key_column() -> sa.Column:
    return sa.Column("cycle_key", sa.String(32), nullable=False)


def _cycle_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["cycle_key"],
        ["evaluation_cycles.cycle_key"],
        name=f"fk_{table}_cycle_key_evaluation_cycles",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "evaluation_cycles",
        sa.Column("cycle_key", sa.String(32), nullable=False),
        sa.Column("block", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(80), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("n_miners", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_envs", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "status IN ('running', 'completed', 'failed')", name="ck_evaluation_cycles_status"
        ),
        sa.PrimaryKeyConstraint("cycle_key", name="pk_evaluation_cycles"),
    )
    op.create_index("ix_evaluation_cycles_block", "evaluation_cycles", ["block"])

    op.create_table(
        "miner_commitments",
        _cycle_key_column(),
        sa.Column("uid", sa.Integer(), nullable=False),
        sa.Column("hotkey", sa.String(64), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("repo", sa.String(256), nullable=True),
        sa.Column("revision", sa.String(64), nullable=True),
        sa.Column("commit_block", sa.BigInteger(), nullable=False),
        sa.Column("first_seen_block", sa.BigInteger(), nullable=True),
        sa.Column("content_hash", sa.String(128), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("duplicate_of_uid", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('ok', 'unparseable', 'fetch_failed', 'duplicate')",
            name="ck_miner_commitments_status",
        ),
        _cycle_fk("miner_commitments"),
        sa.PrimaryKeyConstraint("cycle_key", "uid", name="pk_miner_commitments"),
    )

    op.create_table(
        "revision_first_seen",
        sa.Column("repo", sa.String(256), nullable=False),
        sa.Column("revision", sa.String(64), nullable=False),
        sa.Column("first_seen_block", sa.BigInteger(), nullable=False),
        sa.Column("content_hash", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("repo", "revision", name="pk_revision_first_seen"),
    )

    op.create_table(
        "episodes",
        _cycle_key_column(),
        sa.Column("env_id", sa.String(128), nullable=False),
        sa.Column("uid", sa.Integer(), nullable=False),
        sa.Column("episode", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("total_reward", sa.Float(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("wall_seconds", sa.Float(), nullable=False),
        sa.Column("error_kind", sa.String(32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("latency_p50_ms", sa.Float(), nullable=True),
        sa.Column("latency_p99_ms", sa.Float(), nullable=True),
        _cycle_fk("episodes"),
        sa.PrimaryKeyConstraint("cycle_key", "env_id", "uid", "episode", name="pk_episodes"),
    )

    op.create_table(
        "miner_scores",
        _cycle_key_column(),
        sa.Column("uid", sa.Integer(), nullable=False),
        sa.Column("env_id", sa.String(128), nullable=False),
        sa.Column("success_rate", sa.Float(), nullable=False),
        sa.Column("episodes_completed", sa.Integer(), nullable=False),
        sa.Column("episodes_failed", sa.Integer(), nullable=False),
        sa.Column("mean_reward", sa.Float(), nullable=False),
        _cycle_fk("miner_scores"),
        sa.PrimaryKeyConstraint("cycle_key", "uid", "env_id", name="pk_miner_scores"),
    )

    op.create_table(
        "pareto_scores",
        _cycle_key_column(),
        sa.Column("uid", sa.Integer(), nullable=False),
        sa.Column("on_frontier", sa.Boolean(), nullable=False),
        sa.Column("points", sa.Float(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        _cycle_fk("pareto_scores"),
        sa.PrimaryKeyConstraint("cycle_key", "uid", name="pk_pareto_scores"),
    )

    op.create_table(
        "weights",
        _cycle_key_column(),
        sa.Column("block", sa.BigInteger(), nullable=False),
        sa.Column("weights", sa.JSON(), nullable=False),
        sa.Column("u16_uids", sa.JSON(), nullable=False),
        sa.Column("u16_values", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("n_miners", sa.Integer(), nullable=False),
        sa.Column("n_envs", sa.Integer(), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        _cycle_fk("weights"),
        sa.PrimaryKeyConstraint("cycle_key", name="pk_weights"),
        sa.UniqueConstraint("block", name="uq_weights_block"),
    )
    op.create_index("ix_weights_created_at", "weights", ["created_at"])

    op.create_table(
        "chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("block", sa.BigInteger(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_chain_head_single_row"),
        sa.PrimaryKeyConstraint("id", name="pk_chain_head"),
    )


def downgrade() -> None:
    op.drop_table("chain_head")
    op.drop_index("ix_weights_created_at", table_name="weights")
    op.drop_table("weights")
    op.drop_table("pareto_scores")
    op.drop_table("miner_scores")
    op.drop_table("episodes")
    op.drop_table("revision_first_seen")
    op.drop_table("miner_commitments")
    op.drop_index("ix_evaluation_cycles_block", table_name="evaluation_cycles")
    op.drop_table("evaluation_cycles")
