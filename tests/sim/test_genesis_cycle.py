"""A cycle over both built-in families on the embedded default: MetaWorld and Genesis partitions in the
same assets, real policy servers over HTTP, weights from both families.

The chain's head (block 1300 of a chain named "two-families") gives the humanoid's episode 1 a
navigate task the scripted expert's G1 baseline reaches (its landings cover ~20 % of navigate
targets); episode 0 is one it cannot do, so it stands through it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "miners"
ENV_IDS = ["metaworld/reach-v3", "genesis/g1-v0"]
HEAD_BLOCK = 1300
MAX_STEPS = 200  # the baseline's falls end by step ~170

CYCLE = """
import json
import dagster as dg
from kinitro_dagster.definitions import defs
from kinitro_dagster.defs.partitions import episode_key
from kinitro_dagster.demo import open_cycle
from kinitro_dagster.warehouse.store import Warehouse

env_ids = json.loads(__import__("os").environ["KINITRO_SCHEDULER_ENV_IDS"])
with dg.instance_for_test() as instance:
    cycle = open_cycle(instance, defs.resources)
    jobs = [("open_cycle", cycle), *[("evaluate_env", episode_key(cycle, e)) for e in env_ids], ("score_cycle", cycle)]
    for job, key in jobs:
        assert defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=key).success, job
store = Warehouse(defs.resources["warehouse"].database_url)
print(json.dumps({
    "rows": {e: [[r.uid, r.episode, r.success, r.steps, r.error_kind, r.error] for r in store.episodes(cycle, e)]
             for e in env_ids},
    "weights": store.weights_for_cycle(cycle).weights,
}))
"""


def _chain(state: Path) -> None:
    from kinitro_dagster.miners.chain import ChainCommitment, write_chain_file
    from kinitro_dagster.miners.hub import publish_to_cache

    miners = [(0, "demo/scripted-expert", EXAMPLES / "scripted_expert"), (1, "demo/random", EXAMPLES / "random_policy")]
    commitments = []
    for uid, repo, source in miners:
        copy = state.parent / repo.replace("/", "_")
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
        revision = publish_to_cache(copy, repo, cache_dir=state / "hub")
        commitments.append(ChainCommitment(uid=uid, hotkey=f"5Demo{uid}", raw=f"{repo}:{revision}", block=10 + uid))
    write_chain_file(state / "chain.yaml", commitments, name="two-families", head_block=HEAD_BLOCK)


@pytest.mark.slow
def test_a_cycle_over_metaworld_and_genesis(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _chain(state)
    env = {**os.environ, "KINITRO_STATE_DIR": str(state), "KINITRO_SCHEDULER_ENV_IDS": json.dumps(ENV_IDS),
           "KINITRO_SCHEDULER_EPISODES_PER_ENV": "2", "KINITRO_SCHEDULER_EVAL_INTERVAL_BLOCKS": "100",
           "KINITRO_EXECUTOR_MAX_TIMESTEPS": str(MAX_STEPS), "KINITRO_EXECUTOR_USE_IMAGES": "false",
           "KINITRO_EXECUTOR_PRIVILEGED_STATE": "true", "HF_HUB_OFFLINE": "1"}  # fmt: skip
    result = subprocess.run([sys.executable, "-c", CYCLE], env=env, capture_output=True, text=True, timeout=900,
                            cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])

    reach, genesis = seen["rows"]["metaworld/reach-v3"], seen["rows"]["genesis/g1-v0"]
    assert sorted((uid, episode) for uid, episode, *_ in genesis) == [(u, e) for u in (0, 1) for e in range(2)]
    by_uid = {uid: sorted(row for row in genesis if row[0] == uid) for uid in (0, 1)}
    assert all(kind is None for *_, kind, _ in genesis), genesis
    # The expert's G1 baseline stands through the task it cannot reach and falls onto the other's target.
    (_, _, stood, stood_steps, *_), (_, _, reached, reached_steps, *_) = by_uid[0]
    assert not stood and stood_steps == MAX_STEPS
    assert reached and reached_steps < MAX_STEPS
    # The random policy plays joint targets until it falls or runs out of steps, and reaches nothing.
    assert not any(success for _, _, success, *_ in by_uid[1]), by_uid[1]
    assert all(success for uid, _, success, *_ in reach if uid == 0)
    assert seen["weights"] == {"0": 1.0, "1": 0.0}
