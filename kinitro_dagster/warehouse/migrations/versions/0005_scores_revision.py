"""Each cycle counts the writes of its scores (evaluation_cycles.scores_revision).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("evaluation_cycles") as batch:
        batch.add_column(sa.Column("scores_revision", sa.Integer, nullable=False, server_default="0"))
    # Cycles scored before this revision count as written once.
    op.execute(
        "UPDATE evaluation_cycles SET scores_revision = 1 WHERE EXISTS "
        "(SELECT 1 FROM miner_scores WHERE miner_scores.cycle_key = evaluation_cycles.cycle_key)"
    )


def downgrade() -> None:
    with op.batch_alter_table("evaluation_cycles") as batch:
        batch.drop_column("scores_revision")
