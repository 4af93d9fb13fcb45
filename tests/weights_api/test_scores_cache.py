"""Dashboards' heaviest read: `/v1/scores` bodies built once per version of a cycle's scores."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from fastapi.testclient import TestClient
from warehouse_factories import cycle_key, make_cycle, make_scores

from kinitro_dagster.warehouse import Warehouse
from kinitro_dagster.warehouse.records import CycleStatus

ENVS = ["metaworld/reach-v3", "metaworld/push-v3"]


def _score(warehouse: Warehouse, block: int, uids: list[int]) -> None:
    warehouse.upsert_cycle(make_cycle(block))
    warehouse.replace_scores(cycle_key(block), *make_scores(uids, ENVS))


def _statements(store: Warehouse) -> list[str]:
    statements: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    return statements


def test_latest_scores_are_served_from_memory_within_the_ttl(
    warehouse: Warehouse, make_client: Callable[..., TestClient]
) -> None:
    _score(warehouse, 100, [0, 1, 2])
    client = make_client(warehouse=warehouse, latest_ttl_s=60.0)
    first = client.get("/v1/scores/latest")
    statements = _statements(warehouse)

    again = [client.get("/v1/scores/latest") for _ in range(50)]

    assert statements == []
    assert all(r.status_code == 200 and r.content == first.content for r in again)
    assert first.json()["block"] == 100 and sorted(first.json()["scores"]) == ["0", "1", "2"]


def test_a_cycles_scores_cost_one_indexed_read_once_built(
    warehouse: Warehouse, make_client: Callable[..., TestClient]
) -> None:
    _score(warehouse, 100, list(range(40)))
    client = make_client(warehouse=warehouse)
    first = client.get("/v1/scores/100")
    statements = _statements(warehouse)

    again = client.get("/v1/scores/0000000100")

    assert again.content == first.content
    version_reads = [s for s in statements if "scores_revision >" in s]
    assert len(version_reads) == 1 and not [s for s in statements if "FROM miner_scores" in s], statements


def test_rewritten_scores_and_a_completed_cycle_change_the_body(
    warehouse: Warehouse, make_client: Callable[..., TestClient]
) -> None:
    _score(warehouse, 100, [0, 1])
    client = make_client(warehouse=warehouse, latest_ttl_s=0.0)
    before = client.get("/v1/scores/latest")

    warehouse.replace_scores(cycle_key(100), *make_scores([0, 1, 5], ENVS))  # pareto_scores materialized again
    rescored = client.get("/v1/scores/latest")
    warehouse.complete_cycle(cycle_key(100), CycleStatus.COMPLETED, datetime(2025, 1, 15, 12, tzinfo=UTC), 3)
    completed = client.get("/v1/scores/100")

    assert sorted(before.json()["scores"]) == ["0", "1"] and before.json()["status"] == "running"
    assert sorted(rescored.json()["scores"]) == ["0", "1", "5"] and rescored.headers["etag"] != before.headers["etag"]
    assert completed.json()["status"] == "completed"
    assert completed.json()["created_at"].startswith("2025-01-15T12:00:00")
    assert completed.json() == client.get("/v1/scores/latest").json()


def test_a_newer_scored_cycle_becomes_latest_and_the_old_one_stays_addressable(
    warehouse: Warehouse, make_client: Callable[..., TestClient]
) -> None:
    _score(warehouse, 100, [0, 1])
    client = make_client(warehouse=warehouse, latest_ttl_s=0.0)
    old = client.get("/v1/scores/latest").json()
    warehouse.upsert_cycle(make_cycle(300))  # opened, not scored yet: latest stays at 100
    assert client.get("/v1/scores/latest").json() == old
    assert client.get("/v1/scores/300").status_code == 404

    _score(warehouse, 200, [7])

    assert client.get("/v1/scores/latest").json()["block"] == 200
    assert client.get("/v1/scores/100").json() == old


def test_scores_revalidate_to_304_with_their_etag(warehouse: Warehouse, client: TestClient) -> None:
    _score(warehouse, 100, [0, 1])
    for path in ("/v1/scores/latest", "/v1/scores/100"):
        etag = client.get(path).headers["etag"]

        unchanged = client.get(path, headers={"If-None-Match": etag})

        assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged.headers["etag"] == etag


def test_removed_scores_are_not_served(warehouse: Warehouse, client: TestClient) -> None:
    _score(warehouse, 100, [0, 1])
    assert client.get("/v1/scores/latest").status_code == 200

    warehouse.replace_scores(cycle_key(100), [], [])

    assert client.get("/v1/scores/latest").status_code == 404
    assert client.get("/v1/scores/100").json()["detail"].startswith("cycle 0000000100 has no scores yet")
