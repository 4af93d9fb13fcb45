"""Kinitro's env ids (DESIGN §5): rows stored under our earlier ids are rewritten to Kinitro's.

`metaworld/button-press-topdown-v3` -> `metaworld/button-press-v3` and
`metaworld/peg-insert-side-v3` -> `metaworld/peg-insert-v3`, in every place the warehouse holds
an env id: `episodes.env_id`, `miner_scores.env_id` and the keys of `pareto_scores.thresholds`
({env_id: threshold}, JSON). The downgrade maps them back. No column changes.

The ids are written out here rather than imported from `sim.registry`: a migration must keep
doing what it did when it was written, whatever the registry says later.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_TO_KINITRO: dict[str, str] = {
    "metaworld/button-press-topdown-v3": "metaworld/button-press-v3",
    "metaworld/peg-insert-side-v3": "metaworld/peg-insert-v3",
}

# The tables as they are at this revision (only the columns this migration touches).
_ENV_ID_TABLES = [sa.table(name, sa.column("env_id", sa.String)) for name in ("episodes", "miner_scores")]
_pareto_scores = sa.table(
    "pareto_scores", sa.column("cycle_key", sa.String), sa.column("uid", sa.Integer), sa.column("thresholds", sa.JSON)
)


def _rename_env_ids(renames: dict[str, str]) -> None:
    bind = op.get_bind()
    for table in _ENV_ID_TABLES:
        for old, new in renames.items():
            bind.execute(table.update().where(table.c.env_id == old).values(env_id=new))
    _rename_threshold_keys(bind, renames)


def _rename_threshold_keys(bind: sa.Connection, renames: dict[str, str]) -> None:
    """Rewrite the keys of `pareto_scores.thresholds`, one cycle at a time (bounded memory).

    JSON is stored as text on SQLite and as `json` (input text kept) on PostgreSQL, so a LIKE on
    the text finds the candidate rows on both; the keys themselves are checked in Python.
    """
    p = _pareto_scores
    mentions = sa.or_(*(sa.cast(p.c.thresholds, sa.Text).like(f'%"{old}"%') for old in renames))
    cycle_keys = bind.execute(sa.select(p.c.cycle_key).where(mentions).distinct()).scalars().all()
    update = (
        p.update()
        .where(p.c.cycle_key == sa.bindparam("b_cycle_key"), p.c.uid == sa.bindparam("b_uid"))
        .values(thresholds=sa.bindparam("b_thresholds", type_=sa.JSON))
    )
    for cycle_key in cycle_keys:
        rows = bind.execute(sa.select(p.c.uid, p.c.thresholds).where(p.c.cycle_key == cycle_key, mentions)).all()
        changed = [
            {
                "b_cycle_key": cycle_key,
                "b_uid": uid,
                "b_thresholds": {renames.get(k, k): v for k, v in thresholds.items()},
            }
            for uid, thresholds in rows
            if isinstance(thresholds, dict) and renames.keys() & thresholds.keys()
        ]
        if changed:
            bind.execute(update, changed)


def upgrade() -> None:
    _rename_env_ids(OLD_TO_KINITRO)


def downgrade() -> None:
    _rename_env_ids({new: old for old, new in OLD_TO_KINITRO.items()})
