"""Weights API fixtures: an app over the `database_url` warehouse (see tests/conftest.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

# The record builders live beside the warehouse tests; share them rather than copy them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "warehouse"))

from kinitro_dagster.settings import ApiSettings, SchedulerSettings
from kinitro_dagster.warehouse import Warehouse
from weights_api.app import create_app

API_ENV_IDS = ["metaworld/reach-v3", "metaworld/push-v3", "metaworld/pick-place-v3"]


def scheduler_settings(database_url: str) -> SchedulerSettings:
    return SchedulerSettings(database_url=database_url, env_ids=API_ENV_IDS, eval_interval_seconds=3600)


@pytest.fixture
def make_client(database_url: str) -> Iterator[Callable[..., TestClient]]:
    """Build a TestClient (lifespan run) for the app on `database_url`; keyword args go to create_app."""
    clients: list[TestClient] = []

    def make(**kwargs: object) -> TestClient:
        app = create_app(ApiSettings(database_url=database_url), scheduler=scheduler_settings(database_url), **kwargs)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(warehouse: Warehouse, make_client: Callable[..., TestClient]) -> TestClient:
    """The API over a migrated, empty warehouse (fill it through the `warehouse` fixture)."""
    return make_client(latest_ttl_s=0.0)
