"""A new env family drops in with one module and one registry entry: a toy family, registered from
a test module through the package entry-point group, runs a cycle through the real assets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kinitro_dagster.defs.run_coordinator import ENV_FAMILY_TAG, family_budgets
from kinitro_dagster.defs.run_launcher import run_image
from kinitro_dagster.sim.registry import ENTRY_POINT_GROUP, FAMILIES, GENESIS, METAWORLD, preload_modules

REPO = Path(__file__).resolve().parents[2]
TOY_EXPERT = REPO / "tests" / "sim" / "toy_expert_policy.py"
EXAMPLES = REPO / "examples" / "miners"

# In a fresh interpreter with the toy distribution on the path: the registry reads entry points
# when it is imported, and the code location reads KINITRO_* then too.
CYCLE = """
import json, sys
import dagster as dg
from kinitro_dagster.definitions import defs
from kinitro_dagster.defs.partitions import ENABLED_ENV_IDS, episode_key
from kinitro_dagster.demo import open_cycle
from kinitro_dagster.defs.run_coordinator import family_budgets
from kinitro_dagster.defs.run_launcher import run_image
from kinitro_dagster.sim.base import make_env
from kinitro_dagster.sim.registry import FAMILIES, preload_modules
from kinitro_dagster.warehouse.store import Warehouse

with dg.instance_for_test() as instance:
    cycle = open_cycle(instance, defs.resources)
    for job, key in [("open_cycle", cycle), ("evaluate_env", episode_key(cycle, "toy/line-v0")),
                     ("score_cycle", cycle)]:
        assert defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=key).success, job
store = Warehouse(defs.resources["warehouse"].database_url)
rows = store.episodes(cycle, "toy/line-v0")
print(json.dumps({
    "families": sorted(FAMILIES), "enabled": list(ENABLED_ENV_IDS), "env_class": type(make_env("toy/line-v0")).__name__,
    "preload": preload_modules(), "budgets": family_budgets([]),
    "image": run_image("kinitro/evaluator:v1", {"kinitro/env_family": "toy"}, {}),
    "rows": [[r.uid, r.episode, r.success, r.steps, r.error_kind] for r in rows],
    "weights": store.weights_for_cycle(cycle).weights,
}))
"""


def _toy_distribution(site: Path) -> None:
    """What `pip install` of a package declaring the entry point leaves: a dist-info with entry_points.txt."""
    info = site / "kinitro_toy_family-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kinitro-toy-family\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\ntoy = tests.sim.toy_family:FAMILY\n")


def _chain(state: Path) -> None:
    """A file chain of two miners: the toy expert and the random policy, published to the hub cache."""
    from kinitro_dagster.miners.chain import ChainCommitment, write_chain_file
    from kinitro_dagster.miners.hub import publish_to_cache

    # The toy expert: the random policy's server and interface, with a policy.py that reads the goal.
    expert = state.parent / "toy_expert"
    shutil.copytree(EXAMPLES / "random_policy", expert, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(TOY_EXPERT, expert / "policy.py")
    miners = [(0, "toy/expert", expert), (1, "toy/random", EXAMPLES / "random_policy")]
    commitments = []
    for uid, repo, source in miners:
        revision = publish_to_cache(source, repo, cache_dir=state / "hub")
        commitments.append(ChainCommitment(uid=uid, hotkey=f"5Toy{uid}", raw=f"{repo}:{revision}", block=10 + uid))
    write_chain_file(state / "chain.yaml", commitments, name="toy", head_block=1000)


@pytest.mark.slow
def test_a_family_registered_by_entry_point_runs_a_cycle_through_the_real_assets(tmp_path):
    site, state = tmp_path / "site", tmp_path / "state"
    _toy_distribution(site)
    _chain(state)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]), "KINITRO_STATE_DIR": str(state),
           "KINITRO_SCHEDULER_ENV_IDS": json.dumps(["toy/line-v0"]), "KINITRO_SCHEDULER_EPISODES_PER_ENV": "4",
           "KINITRO_SCHEDULER_EVAL_INTERVAL_BLOCKS": "100", "KINITRO_EXECUTOR_MAX_TIMESTEPS": "40",
           "KINITRO_EXECUTOR_USE_IMAGES": "false"}  # fmt: skip
    result = subprocess.run([sys.executable, "-c", CYCLE], env=env, capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])

    assert seen["families"] == ["genesis", "metaworld", "toy"] and seen["enabled"] == ["toy/line-v0"]
    assert seen["env_class"] == "LineEnv" and "tests.sim.toy_family" in seen["preload"]
    # Its entry's budget and image reach the run queue and the run launcher.
    assert {"key": ENV_FAMILY_TAG, "value": "toy", "limit": 1} in seen["budgets"]
    assert seen["image"] == "kinitro/toy:test"
    # Both miners played every episode without an error; the expert solved them all, and won.
    rows = {(uid, episode): (success, steps, error) for uid, episode, success, steps, error in seen["rows"]}
    assert sorted(rows) == [(uid, e) for uid in (0, 1) for e in range(4)]
    assert all(error is None and steps > 0 for _, steps, error in rows.values()), rows
    assert all(rows[(0, e)][0] for e in range(4)) and seen["weights"] == {"0": 1.0, "1": 0.0}, seen


def test_builtin_families_are_metaworld_and_genesis_and_nothing_else_is_registered_here():
    assert list(FAMILIES) == ["metaworld", "genesis"] and FAMILIES["metaworld"] is METAWORLD
    assert FAMILIES["genesis"] is GENESIS and GENESIS.available() == []  # `make install` installs Genesis
    assert METAWORLD.env_class().__name__ == "MetaWorldEnv" and GENESIS.env_class().__name__ == "GenesisG1Env"
    assert preload_modules() == ["kinitro_dagster.sim.metaworld", "kinitro_dagster.sim.genesis_g1"]


def test_registry_budgets_fill_in_only_families_the_config_does_not_limit():
    genesis = {"key": ENV_FAMILY_TAG, "value": "genesis", "limit": 2}
    assert family_budgets([]) == [{"key": ENV_FAMILY_TAG, "value": "metaworld", "limit": 4}, genesis]
    configured = [{"key": ENV_FAMILY_TAG, "value": "metaworld", "limit": 2}]
    assert family_budgets(configured) == [*configured, genesis]
    # The operator's image for a family wins over the registry's; other runs keep the default.
    assert run_image("default:v1", {ENV_FAMILY_TAG: "metaworld"}, {"metaworld": "mine:v1"}) == "mine:v1"
    assert run_image("default:v1", {ENV_FAMILY_TAG: "metaworld"}, {}) == "default:v1"
    assert run_image("default:v1", {}, {"metaworld": "mine:v1"}) == "default:v1"
