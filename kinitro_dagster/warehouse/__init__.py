"""The warehouse: SQLAlchemy tables, Alembic migrations and the `Warehouse` store.

The store is imported lazily: rollout workers import `warehouse.records` and should not pay for
SQLAlchemy and Alembic (about 2.5 s here) to build a dataclass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kinitro_dagster.warehouse.store import (
        CycleNotFound,
        Warehouse,
        WarehouseSchemaMissing,
        WarehouseSummary,
        WarehouseUnavailable,
        create_database,
    )

__all__ = [
    "CycleNotFound",
    "Warehouse",
    "WarehouseSchemaMissing",
    "WarehouseSummary",
    "WarehouseUnavailable",
    "create_database",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from kinitro_dagster.warehouse import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
