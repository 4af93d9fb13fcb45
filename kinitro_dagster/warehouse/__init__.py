"""The warehouse: SQLAlchemy tables, Alembic migrations and the `Warehouse` store."""

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
