"""Each weights row carries its attestation: digest, signer and signature (weights.attestation).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Weights published before this revision keep NULL: the API serves them without a signature.
    with op.batch_alter_table("weights") as batch:
        batch.add_column(sa.Column("attestation", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("weights") as batch:
        batch.drop_column("attestation")
