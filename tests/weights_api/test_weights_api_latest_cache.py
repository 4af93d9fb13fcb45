"""The validators' hot path: cached latest weights, ETag / If-None-Match, real HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from warehouse_factories import make_cycle, make_weights

from kinitro_dagster.warehouse import Warehouse


def _publish(warehouse: Warehouse, block: int, weights: dict[int, float] | None = None) -> None:
    warehouse.upsert_cycle(make_cycle(block))
    warehouse.write_weights(make_weights(block, weights))


def test_latest_weights_carry_an_etag_and_revalidate_to_304(warehouse: Warehouse, client: TestClient) -> None:
    _publish(warehouse, 100)
    first = client.get("/v1/weights/latest")
    etag = first.headers["etag"]

    unchanged = client.get("/v1/weights/latest", headers={"If-None-Match": etag})
    weak = client.get("/v1/weights/latest", headers={"If-None-Match": f'"other", W/{etag}'})
    stale = client.get("/v1/weights/latest", headers={"If-None-Match": '"something-else"'})

    assert etag.startswith('"') and etag.endswith('"')
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged.headers["etag"] == etag
    assert weak.status_code == 304
    assert stale.status_code == 200 and stale.json() == first.json()


def test_new_weights_change_the_etag(warehouse: Warehouse, client: TestClient) -> None:
    _publish(warehouse, 100)
    old = client.get("/v1/weights/latest").headers["etag"]
    _publish(warehouse, 200, {3: 1.0})

    response = client.get("/v1/weights/latest", headers={"If-None-Match": old})

    assert response.status_code == 200
    assert response.json()["block"] == 200
    assert response.headers["etag"] != old


def test_weights_by_block_support_etags_too(warehouse: Warehouse, client: TestClient) -> None:
    _publish(warehouse, 100)
    etag = client.get("/v1/weights/100").headers["etag"]

    assert client.get("/v1/weights/100", headers={"If-None-Match": etag}).status_code == 304
    assert etag == client.get("/v1/weights/latest").headers["etag"]


def _count_statements(store: Warehouse) -> list[str]:
    statements: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    return statements


def test_cached_latest_weights_do_not_query_the_database_per_request(
    warehouse: Warehouse, make_client: Callable[..., TestClient]
) -> None:
    _publish(warehouse, 100)
    client = make_client(warehouse=warehouse, latest_ttl_s=60.0)
    client.get("/v1/weights/latest")
    statements = _count_statements(warehouse)

    for _ in range(200):
        assert client.get("/v1/weights/latest").status_code == 200

    assert statements == []


def test_revalidation_is_one_indexed_probe_and_picks_up_new_weights(
    warehouse: Warehouse, make_client: Callable[..., TestClient]
) -> None:
    _publish(warehouse, 100)
    client = make_client(warehouse=warehouse, latest_ttl_s=0.3)
    assert client.get("/v1/weights/latest").json()["block"] == 100
    _publish(warehouse, 200, {3: 1.0})
    statements = _count_statements(warehouse)

    within_ttl = client.get("/v1/weights/latest").json()["block"]
    queries_within_ttl = len(statements)
    time.sleep(0.35)
    after_ttl = client.get("/v1/weights/latest").json()["block"]

    assert within_ttl == 100 and queries_within_ttl == 0  # served from memory until the TTL runs out
    assert after_ttl == 200
    probe = next(s for s in statements if "weights" in s)  # the version check comes first
    assert "FROM weights" in probe and "ORDER BY weights.block DESC" in probe and "LIMIT" in probe


def test_the_in_memory_fast_path_answers_exactly_like_the_route(
    warehouse: Warehouse, make_client: Callable[..., TestClient]
) -> None:
    _publish(warehouse, 100)
    client = make_client(warehouse=warehouse, latest_ttl_s=60.0)

    via_route = client.get("/v1/weights/latest")  # cold cache: the FastAPI route fills it
    via_fast_path = client.get("/v1/weights/latest?client=validator")  # fresh cache: answered in front of FastAPI
    not_modified = client.get("/v1/weights/latest", headers={"If-None-Match": via_route.headers["etag"]})

    assert via_route.status_code == via_fast_path.status_code == 200
    assert via_fast_path.content == via_route.content
    for header in ("etag", "cache-control", "content-type", "content-length"):
        assert via_fast_path.headers[header] == via_route.headers[header], header
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == via_route.headers["etag"]
    assert client.post("/v1/weights/latest").status_code == 405  # only GET takes the fast path


def test_fast_path_requests_are_counted_under_the_route(
    warehouse: Warehouse, make_client: Callable[..., TestClient]
) -> None:
    _publish(warehouse, 100)
    client = make_client(warehouse=warehouse, latest_ttl_s=60.0)
    for _ in range(3):
        client.get("/v1/weights/latest")
    client.get("/v1/weights/latest", headers={"If-None-Match": client.get("/v1/weights/latest").headers["etag"]})

    text = client.get("/metrics").text

    assert 'kinitro_api_requests_total{method="GET",route="/v1/weights/latest",status="200"} 4.0' in text
    assert 'kinitro_api_requests_total{method="GET",route="/v1/weights/latest",status="304"} 1.0' in text


def test_a_database_failure_keeps_serving_the_cached_weights(
    warehouse: Warehouse, make_client: Callable[..., TestClient]
) -> None:
    _publish(warehouse, 100)
    client = make_client(latest_ttl_s=0.0)
    before = client.get("/v1/weights/latest").json()
    warehouse.reset()  # every table gone: revalidation fails

    during = client.get("/v1/weights/latest")

    assert during.status_code == 200 and during.json() == before
    assert client.get("/health").status_code == 200  # reachable, so healthy; reads 503:
    assert client.get("/v1/weights/100").status_code == 503


@pytest.fixture
def served_api(warehouse: Warehouse, database_url: str, serving_api) -> Iterator[str]:
    """The app under uvicorn on a real loopback port."""
    with serving_api(database_url) as url:
        yield url


def test_validators_poll_over_real_http(warehouse: Warehouse, served_api: str) -> None:
    _publish(warehouse, 100)
    with httpx.Client(base_url=served_api, timeout=5) as http:
        assert http.get("/health").json() == {"status": "healthy", "database": "connected"}
        first = http.get("/v1/weights/latest")
        again = http.get("/v1/weights/latest", headers={"If-None-Match": first.headers["etag"]})

    assert first.status_code == 200
    assert {int(uid): w for uid, w in first.json()["weights"].items()} == {0: 0.15, 1: 0.25, 5: 0.6}
    assert again.status_code == 304
