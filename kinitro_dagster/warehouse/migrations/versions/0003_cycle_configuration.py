"""Each cycle records the configuration it runs with (evaluation_cycles.config).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Cycles opened before this revision keep NULL: readers fall back to the current settings.
    with op.batch_alter_table("evaluation_cycles") as batch:
        batch.add_column(sa.Column("config", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("evaluation_cycles") as batch:
        batch.drop_column("config")
