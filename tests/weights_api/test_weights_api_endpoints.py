"""Every endpoint of the weights API over a real warehouse (SQLite file and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from warehouse_factories import (
    cycle_key,
    make_commitment,
    make_cycle,
    make_scores,
    make_weights,
)

from kinitro_dagster.settings import ApiSettings, SchedulerSettings
from kinitro_dagster.warehouse import Warehouse, WarehouseUnavailable
from kinitro_dagster.warehouse.records import CommitmentStatus, CycleStatus
from weights_api.app import create_app

REACH, PUSH = "metaworld/reach-v3", "metaworld/push-v3"
WEIGHTS_FIELDS = {"cycle_id", "block", "block_number", "weights", "weights_u16", "created_at", "timestamp", "metadata",
                  "digest", "digest_parts", "signature", "signer", "public_key"}


def _fill(warehouse: Warehouse) -> None:
    """Two cycles: 100 completed with scores and weights, 200 still running."""
    done = make_cycle(100, status=CycleStatus.COMPLETED, completed_at=datetime(2025, 1, 15, 11, 0, tzinfo=UTC))
    warehouse.upsert_cycle(done)
    warehouse.replace_commitments(
        cycle_key(100),
        [
            make_commitment(0),
            make_commitment(1),
            make_commitment(5),
            make_commitment(7, status=CommitmentStatus.DUPLICATE, duplicate_of_uid=5, reason="copy of uid 5"),
        ],
    )
    warehouse.replace_scores(cycle_key(100), *make_scores([0, 1, 5], [REACH, PUSH]))
    warehouse.write_weights(make_weights(100))
    warehouse.upsert_cycle(make_cycle(200))
    warehouse.replace_commitments(cycle_key(200), [make_commitment(0), make_commitment(1)])


# ----------------------------------------------------------------------------- empty warehouse


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/v1/weights/latest", "no weights published yet"),
        ("/v1/weights/12300", "no weights found for block 12300"),
        ("/v1/scores/latest", "no cycle has been scored yet"),
        ("/v1/scores/0000012300", "no evaluation cycle 0000012300"),
        ("/v1/weights/9223372036854775807", "no weights found for block 9223372036854775807"),
        ("/v1/scores/9999999999999999999", "no evaluation cycle 9999999999999999999"),  # beyond BIGINT
    ],
)
def test_empty_warehouse_answers_404_with_a_reason(client: TestClient, path: str, detail: str) -> None:
    response = client.get(path)

    assert response.status_code == 404
    assert detail in response.json()["detail"]


def test_empty_warehouse_lists_nothing_and_reports_no_cycle(client: TestClient) -> None:
    assert client.get("/v1/miners").json() == {"cycle_id": None, "miners": []}
    environments = client.get("/v1/environments").json()
    assert [e["env_id"] for e in environments["environments"]] == [REACH, PUSH, "metaworld/pick-place-v3"]
    assert all(e["n_evaluations"] == 0 and e["avg_success_rate"] is None for e in environments["environments"])

    status = client.get("/v1/status").json()
    assert status["current_block"] is None and status["last_eval_block"] is None
    assert status["next_eval_in_seconds"] == 0
    assert status["miners_registered"] == 0 and status["total_cycles"] == 0


def test_unmigrated_warehouse_answers_503_saying_to_run_db_init(
    database_url: str, make_client: Callable[..., TestClient]
) -> None:
    client = make_client()

    response = client.get("/v1/weights/latest")

    assert response.status_code == 503
    assert "kinitro db init" in response.json()["detail"]
    assert client.get("/health").json() == {"status": "healthy", "database": "connected"}


# ----------------------------------------------------------------------------- health


def test_health_reports_a_connected_database(client: TestClient) -> None:
    response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "healthy", "database": "connected"}


def test_health_is_503_when_the_database_is_unreachable() -> None:
    app = create_app(ApiSettings(database_url="postgresql://postgres@127.0.0.1:1/kinitro"))
    with TestClient(app) as client:
        response = client.get("/health")
        weights = client.get("/v1/weights/latest")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert "cannot reach PostgreSQL at 127.0.0.1:1" in body["database"]
    assert weights.status_code == 503



@pytest.mark.parametrize("ttl_s", [0.0, 60.0])
def test_health_reports_a_database_that_went_away_after_its_check_window(
    warehouse: Warehouse, make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch, ttl_s: float
) -> None:
    client = make_client(warehouse=warehouse, health_ttl_s=ttl_s)
    assert client.get("/health").status_code == 200

    def down() -> None:
        raise WarehouseUnavailable("database is unavailable (OperationalError: server closed the connection)")

    monkeypatch.setattr(warehouse, "ping", down)
    response = client.get("/health")

    if ttl_s == 0.0:  # the next check sees it
        assert response.status_code == 503
        assert response.json() == {"status": "unhealthy", "database": "database is unavailable "
                                   "(OperationalError: server closed the connection)"}  # fmt: skip
    else:  # within the window the last check is reported
        assert response.status_code == 200

# ----------------------------------------------------------------------------- weights


def test_latest_weights_carry_guide_and_validator_fields(warehouse: Warehouse, client: TestClient) -> None:
    _fill(warehouse)

    response = client.get("/v1/weights/latest")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == WEIGHTS_FIELDS
    assert body["cycle_id"] == "0000000100"
    assert body["block"] == body["block_number"] == 100
    assert body["weights"] == {"0": 0.15, "1": 0.25, "5": 0.6}
    assert body["weights_u16"] == {"uids": [0, 1, 5], "values": [16384, 27306, 65535]}
    assert body["created_at"] == body["timestamp"] == "2025-01-15T10:31:40Z"
    assert body["metadata"] == {"n_miners_evaluated": 3, "n_environments": 2, "evaluation_duration_seconds": 1800.0}
    assert all(body[k] is None for k in ("digest", "digest_parts", "signature", "signer", "public_key"))  # unsigned
    assert response.headers["content-type"] == "application/json"


def test_latest_weights_follow_the_highest_block(warehouse: Warehouse, client: TestClient) -> None:
    for block in (100, 200):
        warehouse.upsert_cycle(make_cycle(block))
        warehouse.write_weights(make_weights(block, {block: 1.0}))
    assert client.get("/v1/weights/latest").json()["block"] == 200

    # Re-materializing an old cycle rewrites its row; validators must not roll back to it.
    warehouse.write_weights(make_weights(100, {1: 1.0}, created_at=datetime.now(UTC)))

    assert client.get("/v1/weights/latest").json()["block"] == 200
    assert client.get("/v1/weights/100").json()["weights"] == {"1": 1.0}


def test_weights_by_block_match_exactly(warehouse: Warehouse, client: TestClient) -> None:
    _fill(warehouse)

    found = client.get("/v1/weights/100")
    missing = client.get("/v1/weights/150")

    assert found.status_code == 200
    assert found.json() == client.get("/v1/weights/latest").json()
    assert missing.status_code == 404
    assert missing.json() == {"detail": "no weights found for block 150; see /v1/weights/latest"}


@pytest.mark.parametrize("path", ["/v1/weights/abc", "/v1/weights/-1", "/v1/weights/1.5", "/v1/scores/abc"])
def test_malformed_path_parameters_are_422(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 422


def test_the_api_is_read_only(client: TestClient) -> None:
    for method in ("post", "put", "delete", "patch"):
        assert getattr(client, method)("/v1/weights/latest").status_code == 405


# ----------------------------------------------------------------------------- scores


def test_latest_scores_report_rates_front_points_and_thresholds(warehouse: Warehouse, client: TestClient) -> None:
    _fill(warehouse)

    body = client.get("/v1/scores/latest").json()

    assert body["cycle_id"] == "0000000100" and body["block"] == 100 and body["status"] == "completed"
    assert body["scores"] == {
        "0": {PUSH: 0.1, REACH: 0.1},
        "1": {PUSH: 0.2, REACH: 0.2},
        "5": {PUSH: 0.6, REACH: 0.6},
    }
    assert body["pareto_frontier"] == [5]
    assert body["points"] == {"0": 1.0, "1": 2.0, "5": 6.0}
    assert body["thresholds"]["5"] == {REACH: 0.65, PUSH: 0.65}
    assert body["created_at"] == "2025-01-15T11:00:00Z"


def test_scores_by_cycle_accept_the_key_or_the_block(warehouse: Warehouse, client: TestClient) -> None:
    _fill(warehouse)

    by_key = client.get("/v1/scores/0000000100")
    by_block = client.get("/v1/scores/100")

    assert by_key.status_code == by_block.status_code == 200
    assert by_key.json() == by_block.json() == client.get("/v1/scores/latest").json()


def test_scores_of_an_unscored_or_unknown_cycle_are_404(warehouse: Warehouse, client: TestClient) -> None:
    _fill(warehouse)

    running = client.get("/v1/scores/200")
    unknown = client.get("/v1/scores/999")

    assert running.status_code == 404
    assert running.json()["detail"] == "cycle 0000000200 has no scores yet (status running)"
    assert unknown.status_code == 404


# ----------------------------------------------------------------------------- miners, envs, status


def test_miners_lists_the_latest_cycles_commitments_with_results(warehouse: Warehouse, client: TestClient) -> None:
    _fill(warehouse)
    warehouse.replace_commitments(cycle_key(200), [])  # cycle 200 read nothing yet: 100 is the latest with miners

    body = client.get("/v1/miners").json()

    assert body["cycle_id"] == "0000000100"
    miners = {m["uid"]: m for m in body["miners"]}
    assert sorted(miners) == [0, 1, 5, 7]
    five = miners[5]
    assert five["status"] == "active" and five["hotkey"] == "5Hotkey0005" and five["endpoint"] is None
    assert five["repo"] == "miner5/policy" and five["first_seen_block"] == 95
    assert five["last_evaluated_block"] == 100 and five["last_evaluated"] == "2025-01-15T11:00:00Z"
    assert five["avg_success_rate"] == pytest.approx(0.6)
    assert sorted(five["environments_evaluated"]) == [PUSH, REACH]
    assert five["weight"] == 0.6
    copy = miners[7]
    assert copy["status"] == "duplicate" and copy["duplicate_of_uid"] == 5 and copy["reason"] == "copy of uid 5"
    assert copy["last_evaluated"] is None and copy["avg_success_rate"] is None and copy["weight"] == 0.0


def test_environments_carry_latest_cycle_statistics(warehouse: Warehouse, client: TestClient) -> None:
    _fill(warehouse)

    body = client.get("/v1/environments").json()

    assert body["cycle_id"] == "0000000100"
    by_id = {e["env_id"]: e for e in body["environments"]}
    assert by_id[REACH] == {
        "env_id": REACH,
        "env_name": "metaworld",
        "task_name": "reach-v3",
        "enabled": True,
        "n_evaluations": 3,
        "avg_success_rate": pytest.approx(0.3),
    }
    assert by_id["metaworld/pick-place-v3"]["n_evaluations"] == 0


def test_environments_and_status_publish_kinitros_ids_when_configured_with_old_ones(
    warehouse: Warehouse, database_url: str
) -> None:
    old_ids = ["metaworld/button-press-topdown-v3", REACH, "metaworld/peg-insert-side-v3", "metaworld/button-press-v3"]
    scheduler = SchedulerSettings(database_url=database_url, env_ids=old_ids)
    app = create_app(ApiSettings(database_url=database_url), scheduler=scheduler, warehouse=warehouse)

    with TestClient(app) as client:
        environments = client.get("/v1/environments").json()["environments"]
        status = client.get("/v1/status").json()

    kinitro_ids = ["metaworld/button-press-v3", REACH, "metaworld/peg-insert-v3"]
    assert [(e["env_id"], e["task_name"]) for e in environments] == [
        ("metaworld/button-press-v3", "button-press-topdown-v3"),
        (REACH, "reach-v3"),
        ("metaworld/peg-insert-v3", "peg-insert-side-v3"),
    ]
    assert status["environments_enabled"] == kinitro_ids


def test_status_uses_the_latest_cycle_without_a_chain_head(warehouse: Warehouse, client: TestClient) -> None:
    _fill(warehouse)
    warehouse.upsert_cycle(make_cycle(200, opened_at=datetime.now(UTC) - timedelta(minutes=10)))

    body = client.get("/v1/status").json()

    assert body["status"] == "running"
    assert body["current_block"] == body["last_eval_block"] == 200
    assert 2990 <= body["next_eval_in_seconds"] <= 3000  # 3600 s interval, opened 600 s ago
    assert body["miners_registered"] == 2
    assert body["environments_enabled"] == [REACH, PUSH, "metaworld/pick-place-v3"]
    assert body["is_evaluating"] is True
    assert body["current_cycle_id"] == "0000000200" and body["last_completed_cycle_id"] == "0000000100"
    assert body["total_cycles"] == 2


def test_status_counts_down_on_the_chain_clock_when_a_head_is_known(warehouse: Warehouse, client: TestClient) -> None:
    _fill(warehouse)
    warehouse.record_chain_head(350, datetime.now(UTC))  # interval 3600 s = 300 blocks: next at 500

    body = client.get("/v1/status").json()

    assert body["current_block"] == 350
    assert body["last_eval_block"] == 200
    assert 150 * 12 - 10 <= body["next_eval_in_seconds"] <= 150 * 12


# ----------------------------------------------------------------------------- metrics and schema


def test_metrics_expose_evaluation_and_request_metrics(warehouse: Warehouse, client: TestClient) -> None:
    _fill(warehouse)
    client.get("/v1/weights/latest")
    client.get("/v1/weights/150")

    text = client.get("/metrics").text

    assert 'kinitro_eval_cycles_total{status="completed"} 1.0' in text
    assert 'kinitro_eval_cycles_total{status="running"} 1.0' in text
    assert 'kinitro_eval_duration_seconds_bucket{le="1800.0"} 1.0' in text
    assert "kinitro_eval_duration_seconds_count 1.0" in text
    assert "kinitro_miners_active 2.0" in text  # cycle 200's two valid commitments
    assert f'kinitro_miner_scores{{env="{REACH}",uid="5"}} 0.6' in text
    assert "kinitro_warehouse_up 1.0" in text
    assert 'kinitro_api_requests_total{method="GET",route="/v1/weights/latest",status="200"} 1.0' in text
    assert 'kinitro_api_requests_total{method="GET",route="/v1/weights/{block}",status="404"} 1.0' in text
    assert 'kinitro_api_request_duration_seconds_count{method="GET",route="/v1/weights/latest"} 1.0' in text


def test_metrics_still_answer_when_the_database_is_down() -> None:
    with TestClient(create_app(ApiSettings(database_url="postgresql://postgres@127.0.0.1:1/kinitro"))) as client:
        response = client.get("/metrics")

    assert response.status_code == 200
    assert "kinitro_warehouse_up 0.0" in response.text


def test_openapi_documents_every_endpoint_and_the_weights_model(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()

    assert set(schema["paths"]) == {
        "/health",
        "/v1/status",
        "/v1/weights/latest",
        "/v1/weights/{block}",
        "/v1/scores/latest",
        "/v1/scores/{cycle_id}",
        "/v1/miners",
        "/v1/environments",
        "/v1/audit/{cycle_id}",
        "/v1/audit/{cycle_id}/{table}.parquet",
        "/metrics",
    }
    assert all(set(ops) == {"get"} for ops in schema["paths"].values())
    weights = schema["components"]["schemas"]["WeightsResponse"]
    assert set(weights["properties"]) == WEIGHTS_FIELDS
    latest = schema["paths"]["/v1/weights/latest"]["get"]["responses"]
    assert latest["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/WeightsResponse")
    assert {"304", "404"} <= set(latest)
