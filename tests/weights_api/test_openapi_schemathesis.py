"""Property-based check of the whole API against its own OpenAPI schema (schemathesis).

Every operation gets generated requests (the schema's examples, its boundary values, random valid
and invalid path parameters) against an empty warehouse and a populated one, on SQLite and on
PostgreSQL. No response may be a 5xx, and each must be what the schema documents: status code,
content type, headers and body. Examples are bounded so the default tier stays fast.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from warehouse_factories import cycle_key, make_commitment, make_cycle, make_scores, make_weights

from kinitro_dagster.settings import ApiSettings, SchedulerSettings
from kinitro_dagster.warehouse import Warehouse
from kinitro_dagster.warehouse.records import CommitmentStatus, CycleStatus
from weights_api.app import EXAMPLE_BLOCK, create_app

ENV_IDS = ["metaworld/reach-v3", "metaworld/push-v3"]
MAX_EXAMPLES = 25


def _populate(store: Warehouse) -> None:
    """A completed cycle with scores and weights at the schema's example block, a running one after it."""
    done_at = datetime(2025, 1, 15, 11, 0, tzinfo=UTC)
    store.upsert_cycle(make_cycle(EXAMPLE_BLOCK, status=CycleStatus.COMPLETED, completed_at=done_at))
    uids = list(range(6))
    copy = make_commitment(9, status=CommitmentStatus.DUPLICATE, duplicate_of_uid=5, reason="copy of uid 5")
    store.replace_commitments(cycle_key(EXAMPLE_BLOCK), [*(make_commitment(u) for u in uids), copy])
    store.replace_scores(cycle_key(EXAMPLE_BLOCK), *make_scores(uids, ENV_IDS))
    store.write_weights(make_weights(EXAMPLE_BLOCK, {u: (u + 1) / 21 for u in uids}))
    store.upsert_cycle(make_cycle(EXAMPLE_BLOCK + 300))
    store.replace_commitments(cycle_key(EXAMPLE_BLOCK + 300), [make_commitment(u) for u in uids])
    store.record_chain_head(EXAMPLE_BLOCK + 350, datetime.now(UTC))


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # schemathesis 4.32 reads `item._nodeid` to label operations; pytest 9.2 keeps it elsewhere.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@pytest.fixture(params=["empty", "populated"])
def api_schema(request: pytest.FixtureRequest, warehouse: Warehouse, database_url: str) -> schemathesis.BaseSchema:
    if request.param == "populated":
        _populate(warehouse)
    scheduler = SchedulerSettings(database_url=database_url, env_ids=ENV_IDS)
    app = create_app(ApiSettings(database_url=database_url), scheduler=scheduler, warehouse=warehouse)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_response_is_documented_and_never_a_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate()
