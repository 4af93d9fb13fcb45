"""The weights API serves signed weights and the audit export they can be checked against."""

from __future__ import annotations

import io
import zipfile

import pandas as pd
import pytest
from audit_factories import ENVS, signed_cycle
from fastapi.testclient import TestClient

from kinitro_dagster.audit.export import TABLES, audit_from_parquet
from kinitro_dagster.audit.verify import verify_weights
from kinitro_dagster.settings import ApiSettings
from kinitro_dagster.warehouse import Warehouse
from weights_api.app import create_app


@pytest.fixture
def served(warehouse: Warehouse, database_url: str, key):
    audit = signed_cycle(key)
    warehouse.upsert_cycle(audit.cycle)
    warehouse.replace_commitments(audit.cycle.cycle_key, audit.commitments)
    for env, rows in audit.episodes_by_env.items():
        warehouse.replace_episodes(audit.cycle.cycle_key, env, rows)
    warehouse.replace_scores(audit.cycle.cycle_key, audit.miner_scores, audit.pareto)
    warehouse.write_weights(audit.weights)
    with TestClient(create_app(ApiSettings(database_url=database_url), latest_ttl_s=0.0)) as client:
        yield client, audit


def test_weights_responses_carry_the_attestation_and_verify_against_the_served_export(served, key):
    client, audit = served
    for path in ("/v1/weights/latest", f"/v1/weights/{audit.cycle.block}"):
        body = client.get(path).json()
        assert body["signer"] == key.ss58_address and body["public_key"] == key.public_key_hex
        assert set(body["digest_parts"]) == {"cycle", "configuration", "scoring", "commitments",
                                             *(f"episodes/{env}" for env in ENVS)}
        export = client.get(f"/v1/audit/{body['cycle_id']}")
        assert export.status_code == 200 and export.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(export.content)) as archive:
            assert sorted(archive.namelist()) == sorted(f"{t}.parquet" for t in TABLES)
            exported = audit_from_parquet({t: archive.read(f"{t}.parquet") for t in TABLES})
        report = verify_weights(body, exported, key.ss58_address)
        assert report.passed, [(c.name, c.detail) for c in report.failures]


def test_one_table_reads_with_pandas_and_unknown_cycles_or_tables_are_refused(served):
    client, audit = served
    response = client.get(f"/v1/audit/{audit.cycle.block}/episodes.parquet")  # by block, as /v1/scores
    assert response.status_code == 200 and response.headers["content-type"] == "application/vnd.apache.parquet"
    frame = pd.read_parquet(io.BytesIO(response.content))
    assert len(frame) == sum(len(rows) for rows in audit.episodes_by_env.values())
    assert set(frame["env_id"]) == set(ENVS) and frame["error_kind"].notna().sum() == len(ENVS)
    assert client.get("/v1/audit/0000099999").status_code == 404
    assert client.get(f"/v1/audit/{audit.cycle.cycle_key}/secrets.parquet").status_code == 422
