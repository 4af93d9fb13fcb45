"""Per-miner and per-environment statistics, and the metrics scrape, pinned on known scores.

The API reads a cycle's success rates as plain (uid, env, rate) tuples and counts commitments in
SQL; these tests fix what it must compute from them: the same numbers, to the last bit, as the
mean over each miner's and each environment's `MinerScoreRecord`s in (uid, env) order. SQL AVG
is not used for means: SQLite 3.40 sums naively and changed 7 of 8 environment means of the
benchmark's subnet in the last digits (0.268125 came out as 0.26812499999999995).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from warehouse_factories import cycle_key, make_commitment, make_cycle, make_scores, make_weights

from kinitro_dagster.warehouse import Warehouse
from kinitro_dagster.warehouse.records import CommitmentStatus, CycleStatus, MinerScoreRecord
from weights_api.metrics import WarehouseCollector, exposition

REACH, PUSH, PICK = "metaworld/reach-v3", "metaworld/push-v3", "metaworld/pick-place-v3"  # the API's env_ids


def _score(uid: int, env_id: str, rate: float) -> MinerScoreRecord:
    return MinerScoreRecord(uid, env_id, rate, episodes_completed=8, episodes_failed=0, mean_reward=0.0)


def _scored_cycle(warehouse: Warehouse, block: int, scores: list[MinerScoreRecord]) -> None:
    uids = sorted({s.uid for s in scores})
    warehouse.upsert_cycle(make_cycle(block, status=CycleStatus.COMPLETED))
    warehouse.replace_commitments(cycle_key(block), [make_commitment(u) for u in uids])
    warehouse.replace_scores(cycle_key(block), scores, make_scores(uids, [REACH])[1])
    warehouse.write_weights(make_weights(block, {u: 1 / len(uids) for u in uids}))


def test_miner_and_environment_statistics_are_exact_on_known_scores(warehouse: Warehouse, client: TestClient) -> None:
    # uid 3 was scored on reach only; nobody on pick-place; uid 9 committed but has no scores.
    scores = [
        _score(1, REACH, 0.5),
        _score(1, PUSH, 0.25),
        _score(2, PUSH, 1.0),
        _score(2, REACH, 0.75),
        _score(3, REACH, 0.125),
    ]
    _scored_cycle(warehouse, 100, scores)
    warehouse.replace_commitments(cycle_key(100), [make_commitment(u) for u in (1, 2, 3, 9)])

    miners = {m["uid"]: m for m in client.get("/v1/miners").json()["miners"]}
    environments = {e["env_id"]: e for e in client.get("/v1/environments").json()["environments"]}

    assert {uid: (m["avg_success_rate"], m["environments_evaluated"]) for uid, m in miners.items()} == {
        1: (0.375, [PUSH, REACH]),
        2: (0.875, [PUSH, REACH]),
        3: (0.125, [REACH]),
        9: (None, []),
    }
    assert miners[9]["last_evaluated_block"] is None and miners[1]["last_evaluated_block"] == 100
    assert {env: (e["n_evaluations"], e["avg_success_rate"]) for env, e in environments.items()} == {
        REACH: (3, (0.5 + 0.75 + 0.125) / 3),
        PUSH: (2, 0.625),
        PICK: (0, None),
    }


def test_means_equal_the_record_means_to_the_last_bit(warehouse: Warehouse, client: TestClient) -> None:
    """Rates k/50 (as 50 episodes give) are not binary fractions: the order and kind of summation
    show in the last digits, which is where SQL AVG differed."""
    rng = random.Random(3)
    scores = [_score(uid, env, rng.randint(0, 50) / 50) for uid in range(64) for env in (REACH, PUSH, PICK)]
    _scored_cycle(warehouse, 100, scores)
    records = warehouse.miner_scores(cycle_key(100))  # (uid, env) order, what the API used to sum

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    miners = client.get("/v1/miners").json()["miners"]
    environments = client.get("/v1/environments").json()["environments"]
    scores_body = client.get("/v1/scores/latest").json()["scores"]

    for m in miners:
        assert m["avg_success_rate"] == mean([s.success_rate for s in records if s.uid == m["uid"]])
    for e in environments:
        assert e["avg_success_rate"] == mean([s.success_rate for s in records if s.env_id == e["env_id"]])
        assert e["n_evaluations"] == 64
    assert scores_body == {str(u): {s.env_id: s.success_rate for s in records if s.uid == u} for u in range(64)}


def test_success_rates_are_the_scores_as_sorted_tuples(warehouse: Warehouse) -> None:
    warehouse.upsert_cycle(make_cycle(100))
    warehouse.replace_scores(cycle_key(100), [_score(2, REACH, 0.1), _score(1, REACH, 0.3), _score(1, PUSH, 0.2)], [])

    assert warehouse.success_rates(cycle_key(100)) == [(1, PUSH, 0.2), (1, REACH, 0.3), (2, REACH, 0.1)]
    assert warehouse.success_rates(cycle_key(200)) == []


def test_commitment_counts_by_status(warehouse: Warehouse, client: TestClient) -> None:
    warehouse.upsert_cycle(make_cycle(100))
    warehouse.replace_commitments(
        cycle_key(100),
        [
            make_commitment(0),
            make_commitment(1),
            make_commitment(2),
            make_commitment(3, status=CommitmentStatus.FETCH_FAILED, reason="404 from the hub"),
            make_commitment(4, status=CommitmentStatus.DUPLICATE, duplicate_of_uid=1),
        ],
    )

    assert warehouse.count_commitments(cycle_key(100)) == 5
    assert warehouse.count_commitments(cycle_key(100), CommitmentStatus.OK) == 3
    assert warehouse.count_commitments(cycle_key(100), CommitmentStatus.DUPLICATE) == 1
    assert warehouse.count_commitments(cycle_key(999)) == 0
    assert client.get("/v1/status").json()["miners_registered"] == 5
    assert "kinitro_miners_active 3.0" in client.get("/metrics").text


def test_metrics_follow_a_rescored_cycle(warehouse: Warehouse, client: TestClient) -> None:
    _scored_cycle(warehouse, 100, [_score(1, REACH, 0.5), _score(2, REACH, 0.25)])
    first = client.get("/metrics").text
    assert client.get("/metrics").text.count("kinitro_miner_scores{") == 2  # the memo serves the same

    # A re-run of scoring replaces the same cycle's rows: the scrape must not keep the old ones.
    warehouse.replace_scores(cycle_key(100), [_score(1, REACH, 0.75), _score(2, PUSH, 0.25)], [])
    second = client.get("/metrics").text

    assert f'kinitro_miner_scores{{env="{REACH}",uid="1"}} 0.5' in first
    assert f'kinitro_miner_scores{{env="{REACH}",uid="1"}} 0.75' in second
    assert f'kinitro_miner_scores{{env="{PUSH}",uid="2"}} 0.25' in second
    assert f'env="{REACH}",uid="2"' not in second


def test_exposition_is_byte_for_byte_prometheus_text(warehouse: Warehouse) -> None:
    _scored_cycle(warehouse, 100, [_score(u, env, u / 7) for u in range(5) for env in (REACH, PUSH)])
    registry = CollectorRegistry()
    registry.register(WarehouseCollector(warehouse))

    rendered = exposition(registry)  # first scrape renders the scores family, the second reuses it

    assert rendered == exposition(registry) == generate_latest(registry)
    assert rendered.count(b"kinitro_miner_scores{") == 10


@pytest.mark.parametrize("path", ["/v1/miners", "/v1/environments", "/v1/scores/latest", "/metrics", "/v1/status"])
def test_queries_per_request_do_not_grow_with_the_subnet(
    warehouse: Warehouse, make_client: Callable[..., TestClient], path: str
) -> None:
    client = make_client(warehouse=warehouse, latest_ttl_s=0.0)  # every request reads the warehouse
    statements: list[str] = []

    def record(*args: object) -> None:
        statements.append(str(args[2]))

    def queries(n_miners: int, block: int) -> int:
        _scored_cycle(warehouse, block, [_score(u, env, 0.5) for u in range(n_miners) for env in (REACH, PUSH)])
        statements.clear()
        sa.event.listen(warehouse.engine, "before_cursor_execute", record)
        try:
            assert client.get(path).status_code == 200
        finally:
            sa.event.remove(warehouse.engine, "before_cursor_execute", record)
        return len(statements)

    assert queries(3, 100) == queries(40, 200)
