"""A whole cycle on a real Dagster instance: sensor tick → automation → warehouse → weights API."""

from __future__ import annotations

import dagster as dg
from fastapi.testclient import TestClient

from kinitro_dagster.definitions import build_definitions
from kinitro_dagster.defs.partitions import ENABLED_ENV_IDS, episode_key
from kinitro_dagster.defs.resources import WarehouseResource
from kinitro_dagster.demo import open_cycle
from kinitro_dagster.settings import ApiSettings
from weights_api.app import create_app

EXPERT, NOISY, RANDOM, COPYCAT, TYPO = 0, 1, 2, 3, 4
JOB_FOR_ASSET = {"episode_results": "evaluate_env", "pareto_scores": "score_cycle", "weights": "score_cycle",
                 "audit_export": "score_cycle"}


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, asset: str, partition: str) -> None:
    result = defs.resolve_job_def(JOB_FOR_ASSET[asset]).execute_in_process(
        instance=instance, partition_key=partition, asset_selection=[dg.AssetKey(asset)]
    )
    assert result.success, f"{asset}[{partition}] failed"


def _follow_automation(defs: dg.Definitions, instance: dg.DagsterInstance, cursor) -> list[tuple[str, str]]:
    """Evaluate the eager conditions as the automation sensor does; run what they request."""
    launched = []
    for _ in range(6):
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        cursor = result.cursor
        requested = [(key.to_user_string(), partition) for key in map(dg.AssetKey, JOB_FOR_ASSET)
                     for partition in sorted(result.get_requested_partitions(key))]
        if not requested:
            return launched
        for asset, partition in requested:
            _run(defs, instance, asset, partition)
        launched += requested
    return launched


def _episode_outcomes(store, cycle: str) -> dict:
    return {(env, r.uid, r.episode): (r.seed, r.success, r.steps, round(r.total_reward, 6), r.error_kind)
            for env, rows in store.episodes_by_env(cycle).items() for r in rows}


def test_sensor_opens_a_cycle_that_runs_to_weights_served_by_the_api(demo_state, tmp_path):
    defs = build_definitions(demo_state)
    with dg.instance_for_test() as instance:
        # The automation sensor is already running when the cycle opens: its first tick sees no cycle.
        idle = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert idle.total_requested == 0
        cycle = open_cycle(instance, demo_state)
        assert defs.resolve_job_def("open_cycle").execute_in_process(instance=instance, partition_key=cycle).success

        launched = _follow_automation(defs, instance, idle.cursor)

        episode_partitions = {str(episode_key(cycle, env)) for env in ENABLED_ENV_IDS}
        assert {p for a, p in launched if a == "episode_results"} == episode_partitions
        assert [a for a, _ in launched][-3:] == ["pareto_scores", "weights", "audit_export"]

        store = WarehouseResource(database_url=demo_state["warehouse"].database_url).store()
        statuses = {c.uid: c.status.value for c in store.commitments(cycle)}
        assert statuses == {EXPERT: "ok", NOISY: "ok", RANDOM: "ok", COPYCAT: "duplicate", TYPO: "unparseable"}
        episodes = store.episodes_by_env(cycle)
        assert all(len(rows) == 3 * 2 for rows in episodes.values())  # 3 evaluated miners × 2 episodes

        api = TestClient(create_app(ApiSettings(database_url=demo_state["warehouse"].database_url)))
        response = api.get("/v1/weights/latest")
        assert response.status_code == 200
        body = response.json()
        assert body["block"] == int(cycle) and body["cycle_id"] == cycle
        weights = {int(uid): w for uid, w in body["weights"].items()}
        assert max(weights, key=weights.get) == EXPERT
        assert weights.get(RANDOM, 0.0) == 0.0
        assert abs(sum(weights.values()) - 1.0) < 1e-9
        assert COPYCAT not in weights or weights[COPYCAT] == 0.0

        # Re-materializing an episode partition replaces its rows; same seeds give the same results.
        before = _episode_outcomes(store, cycle)
        _run(defs, instance, "episode_results", str(episode_key(cycle, ENABLED_ENV_IDS[0])))
        assert _episode_outcomes(store, cycle) == before

        # The checks ran with the materializations and passed.
        for check in ("episode_rows_complete", "scores_are_finite", "weights_form_distribution"):
            records = instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(dg.AssetKey(_check_asset(check)), check), limit=10)
            assert records and all(r.status.value == "SUCCEEDED" for r in records), check


def _check_asset(check: str) -> str:
    return {"episode_rows_complete": "episode_results", "scores_are_finite": "pareto_scores",
            "weights_form_distribution": "weights"}[check]
