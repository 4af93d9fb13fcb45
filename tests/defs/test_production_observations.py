"""With default settings (the production track), no observation a miner receives carries
MetaWorld's privileged state, nor any object or goal position: a recording policy, deployed as a
committed miner, plays a cycle's episodes through the real assets and we read what it was sent."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np

from kinitro_dagster.definitions import build_definitions
from kinitro_dagster.defs.partitions import ENABLED_ENV_IDS, episode_key
from kinitro_dagster.defs.resources import build_resources
from kinitro_dagster.demo import open_cycle
from kinitro_dagster.miners.chain import ChainCommitment, write_chain_file
from kinitro_dagster.miners.hub import publish_to_cache
from kinitro_dagster.settings import ExecutorSettings, SchedulerSettings
from kinitro_dagster.sim.base import EnvConfig
from kinitro_dagster.sim.metaworld import MetaWorldEnv

RECORDER = Path(__file__).resolve().parents[1] / "fixtures" / "policies" / "records_observations"
OBSERVATION_KEYS = {"rgb", "depth", "proprio", "cam_intrinsics", "cam_extrinsics", "extra"}
PROPRIO_KEYS = {"ee_pos", "ee_quat", "ee_vel_lin", "ee_vel_ang", "gripper"}


def _numbers(value) -> list[float]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in _numbers(v)]
    return [float(value)] if isinstance(value, int | float) and not isinstance(value, bool) else []


def _contains_vector(numbers: list[float], vector: np.ndarray) -> bool:
    """Whether `vector` appears as consecutive numbers anywhere in `numbers` (within 1e-6)."""
    n = len(vector)
    return any(np.allclose(numbers[i:i + n], vector, atol=1e-6) for i in range(len(numbers) - n + 1))


def test_default_settings_send_miners_no_privileged_state(tmp_path, monkeypatch, database_url) -> None:
    monkeypatch.setenv("KINITRO_STATE_DIR", str(tmp_path / "state"))
    record = tmp_path / "observations.jsonl"
    monkeypatch.setenv("FIXTURE_RECORD", str(record))  # the policy server inherits it
    scheduler = SchedulerSettings(database_url=database_url, episodes_per_env=2, eval_interval_blocks=100)
    executor = ExecutorSettings(max_timesteps=4)  # every other setting at its default
    assert not executor.privileged_state and executor.use_images
    resources = build_resources(scheduler, executor)
    revision = publish_to_cache(RECORDER, "spy/recorder", cache_dir=Path(resources["hub"].cache_dir))
    write_chain_file(Path(resources["chain"].chain_file), [ChainCommitment(0, "5Spy", f"spy/recorder:{revision}", 10)],
                     name="observation-test", head_block=1200)  # fmt: skip

    defs = build_definitions(resources)
    env_id = ENABLED_ENV_IDS[0]
    with dg.instance_for_test() as instance:
        cycle = open_cycle(instance, resources)
        assert defs.resolve_job_def("open_cycle").execute_in_process(instance=instance, partition_key=cycle).success
        assert defs.resolve_job_def("evaluate_env").execute_in_process(
            instance=instance, partition_key=str(episode_key(cycle, env_id))).success
    store = resources["warehouse"].store()
    assert not store.get_cycle(cycle).config.privileged_state
    seeds = [row.seed for row in store.episodes(cycle, env_id)]
    observations = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(observations) == 2 * 4

    # Where the object and the goal are in each episode: MetaWorld's state, built on our side.
    with MetaWorldEnv(env_id, EnvConfig(use_images=False, privileged_state=True)) as env:
        hidden = [np.array(env.reset(seed)["extra"]["state"]) for seed in seeds]
    for obs in observations:
        assert set(obs) == OBSERVATION_KEYS and obs["extra"] == {}
        assert set(obs["proprio"]) == PROPRIO_KEYS
        assert set(obs["rgb"]) == {"corner", "corner2"}  # the cameras, as Kinitro's miners get them
        numbers = _numbers({k: v for k, v in obs.items() if k not in ("rgb", "depth")})
        for state in hidden:
            for name, vector in (("object", state[4:7]), ("goal", state[36:39])):
                assert not _contains_vector(numbers, vector), f"the {name} position reached the miner"
