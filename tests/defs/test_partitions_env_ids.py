"""KINITRO_SCHEDULER_ENV_IDS: Kinitro's ids and our earlier ones both load the code location."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from kinitro_dagster.defs.partitions import enabled_env_ids
from kinitro_dagster.settings import SchedulerSettings
from kinitro_dagster.sim.registry import ENV_IDS, METAWORLD_ENV_IDS

LOAD_AND_PRINT = """
import json
from kinitro_dagster.definitions import defs
from kinitro_dagster.defs.partitions import ENABLED_ENV_IDS, envs
defs.get_repository_def()  # resolves every asset, job and sensor
print(json.dumps({"env_ids": list(ENABLED_ENV_IDS), "keys": envs.get_partition_keys()}))
"""


def load_code_location(env_ids: list[str]) -> subprocess.CompletedProcess:
    environ = {**os.environ, "KINITRO_SCHEDULER_ENV_IDS": json.dumps(env_ids)}
    return subprocess.run([sys.executable, "-c", LOAD_AND_PRINT], env=environ, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


@pytest.mark.parametrize(
    "given",
    [["metaworld/button-press-v3", "metaworld/peg-insert-v3", "metaworld/reach-v3"],
     ["metaworld/button-press-topdown-v3", "metaworld/peg-insert-side-v3", "metaworld/reach-v3"]],
    ids=["kinitro-ids", "old-ids"],
)  # fmt: skip
def test_code_location_loads_with_kinitro_ids_or_old_ones(given: list[str]) -> None:
    loaded = load_code_location(given)

    assert loaded.returncode == 0, loaded.stderr[-3000:]
    result = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert result["env_ids"] == ["metaworld/button-press-v3", "metaworld/peg-insert-v3", "metaworld/reach-v3"]
    assert result["keys"] == ["metaworld.button-press-v3", "metaworld.peg-insert-v3", "metaworld.reach-v3"]


def test_code_location_refuses_an_unknown_env_id_and_names_the_known_ones() -> None:
    loaded = load_code_location(["metaworld/reach-v3", "metaworld/button-press-wall-v3"])

    assert loaded.returncode != 0
    assert "unknown env id 'metaworld/button-press-wall-v3'" in loaded.stderr
    assert "metaworld/button-press-v3" in loaded.stderr and "aliases" in loaded.stderr


def test_both_spellings_of_one_env_count_once_in_the_order_given() -> None:
    settings = SchedulerSettings(env_ids=["metaworld/peg-insert-side-v3", "metaworld/push-v3",
                                          "metaworld/peg-insert-v3", "metaworld/push-v3"])  # fmt: skip
    assert enabled_env_ids(settings) == ["metaworld/peg-insert-v3", "metaworld/push-v3"]


def test_no_env_ids_enables_every_metaworld_env_and_genesis_only_when_named() -> None:
    assert enabled_env_ids(SchedulerSettings(env_ids=None)) == list(METAWORLD_ENV_IDS)
    assert "genesis/g1-v0" in ENV_IDS
    named = enabled_env_ids(SchedulerSettings(env_ids=["metaworld/reach-v3", "genesis/g1-v0"]))
    assert named == ["metaworld/reach-v3", "genesis/g1-v0"]
