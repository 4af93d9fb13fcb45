"""A cycle records the configuration it opened with, and every later step reads that record:
re-scoring an old cycle from a code location loaded with other env ids, episode counts and
temperature gives the same scores and weights, and the API reports the cycle's own envs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dagster as dg
from fastapi.testclient import TestClient

from kinitro_dagster.definitions import build_definitions
from kinitro_dagster.defs.partitions import ENABLED_ENV_IDS, episode_key
from kinitro_dagster.defs.resources import build_resources
from kinitro_dagster.demo import open_cycle
from kinitro_dagster.settings import ApiSettings, ExecutorSettings, SchedulerSettings
from weights_api.app import create_app

OTHER_ENV_IDS = ["metaworld/reach-v3", "metaworld/door-open-v3", "metaworld/drawer-close-v3"]

# Runs in a fresh interpreter: the code location reads KINITRO_* when it is imported.
RESCORE = """
import json, sys
import dagster as dg
from kinitro_dagster.definitions import defs
from kinitro_dagster.defs.partitions import ENABLED_ENV_IDS
cycle = sys.argv[1]
with dg.instance_for_test() as instance:
    instance.add_dynamic_partitions("cycles", [cycle])
    job = defs.resolve_job_def("score_cycle")
    assert job.execute_in_process(instance=instance, partition_key=cycle).success
print(json.dumps(list(ENABLED_ENV_IDS)))
"""


def _scores(store, cycle: str) -> tuple:
    pareto = sorted((p.uid, p.points, p.weight, p.on_frontier, tuple(sorted(p.thresholds.items())))
                    for p in store.pareto_scores(cycle))
    weights = store.weights_for_cycle(cycle)
    return pareto, weights.weights, weights.u16_values, weights.n_envs


def _demo_resources(demo_state: dict, **scheduler: object) -> dict:
    """The demo cycle's resources with other scheduler settings (same warehouse, chain and hub)."""
    url = demo_state["warehouse"].database_url
    executor = ExecutorSettings(max_timesteps=60, use_images=False, privileged_state=True)
    return build_resources(SchedulerSettings(database_url=url, eval_interval_blocks=100, **scheduler), executor)


def test_rescoring_from_a_location_with_other_settings_gives_the_cycles_own_scores(demo_state, tmp_path):
    resources = _demo_resources(demo_state, episodes_per_env=1)
    defs = build_definitions(resources)
    store = demo_state["warehouse"].store()
    with dg.instance_for_test() as instance:
        cycle = open_cycle(instance, resources)
        assert defs.resolve_job_def("open_cycle").execute_in_process(instance=instance, partition_key=cycle).success
        for env_id in ENABLED_ENV_IDS:
            assert defs.resolve_job_def("evaluate_env").execute_in_process(
                instance=instance, partition_key=str(episode_key(cycle, env_id))).success
        assert defs.resolve_job_def("score_cycle").execute_in_process(instance=instance, partition_key=cycle).success

    recorded = store.get_cycle(cycle).config
    assert recorded.env_ids == ENABLED_ENV_IDS and recorded.episodes_per_env == 1 and recorded.max_timesteps == 60
    assert {len(rows) for rows in store.episodes_by_env(cycle).values()} == {3}  # 3 miners x 1 episode
    before = _scores(store, cycle)
    assert before[3] == len(ENABLED_ENV_IDS) and set(OTHER_ENV_IDS) != set(ENABLED_ENV_IDS)

    url = demo_state["warehouse"].database_url
    env = {**os.environ, "KINITRO_SCHEDULER_DATABASE_URL": url, "KINITRO_STATE_DIR": str(tmp_path / "state"),
           "KINITRO_SCHEDULER_ENV_IDS": json.dumps(OTHER_ENV_IDS), "KINITRO_SCHEDULER_EPISODES_PER_ENV": "9",
           "KINITRO_SCHEDULER_PARETO_TEMPERATURE": "7.5", "KINITRO_EXECUTOR_MAX_TIMESTEPS": "11"}
    result = subprocess.run([sys.executable, "-c", RESCORE, cycle], env=env, capture_output=True, text=True,
                            timeout=180)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == OTHER_ENV_IDS  # it really loaded other envs

    assert _scores(store, cycle) == before
    assert store.get_cycle(cycle).config == recorded  # re-scoring does not rewrite what the cycle ran with

    # An API process configured with other envs reports the cycle's own.
    api = TestClient(create_app(ApiSettings(database_url=url),
                                scheduler=SchedulerSettings(database_url=url, env_ids=OTHER_ENV_IDS)))
    assert api.get("/v1/status").json()["environments_enabled"] == list(ENABLED_ENV_IDS)
    assert [e["env_id"] for e in api.get("/v1/environments").json()["environments"]] == list(ENABLED_ENV_IDS)


def test_reopening_a_cycle_keeps_its_first_configuration(demo_state):
    """miner_commitments re-materialized from a process with other settings keeps the record."""
    defs = build_definitions(demo_state)
    store = demo_state["warehouse"].store()
    with dg.instance_for_test() as instance:
        cycle = open_cycle(instance, demo_state)
        assert defs.resolve_job_def("open_cycle").execute_in_process(instance=instance, partition_key=cycle).success
        first = store.get_cycle(cycle).config
        other = build_definitions(_demo_resources(demo_state, episodes_per_env=17, pareto_temperature=3.0))
        assert other.resolve_job_def("open_cycle").execute_in_process(instance=instance, partition_key=cycle).success
    assert store.get_cycle(cycle).config == first
    assert first.episodes_per_env == 2 and first.pareto_temperature == 1.0
