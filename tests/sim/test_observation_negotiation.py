"""A policy's /health declares the cameras it reads; the evaluator renders and sends only those."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from kinitro_dagster.miners.deployments import LocalDeployment, start_all
from kinitro_dagster.protocol import ObservationRequest, observation_request
from kinitro_dagster.sim.base import EnvConfig, observed_config
from kinitro_dagster.sim.episode import MinerTarget
from kinitro_dagster.sim.workers import evaluate_partition

RECORDER = Path(__file__).resolve().parents[1] / "fixtures" / "policies" / "records_observations"
ENV_ID = "metaworld/reach-v3"
CONFIG = EnvConfig(max_steps=3)


@pytest.mark.parametrize(
    ("health", "request_"),
    [
        ({"status": "healthy"}, None),
        ({"observation": None}, None),
        ({"observation": {}}, ObservationRequest()),
        ({"observation": {"cameras": None}}, ObservationRequest()),
        ({"observation": {"cameras": []}}, ObservationRequest(cameras=())),
        ({"observation": {"cameras": ["corner2"], "depth": False}},
         ObservationRequest(cameras=("corner2",), depth=False)),
    ],
)
def test_declarations_are_read_from_health(health, request_):
    assert observation_request(health) == request_


@pytest.mark.parametrize(
    ("declared", "problem"),
    [("all", "must be an object"), ({"cameras": "corner"}, "list of camera names"),
     ({"cameras": [1]}, "list of camera names"), ({"depth": "no"}, "true or false")],
)
def test_a_malformed_declaration_says_what_is_wrong(declared, problem):
    with pytest.raises(ValueError, match=problem):
        observation_request({"observation": declared})


def test_the_config_is_narrowed_to_what_was_declared(caplog):
    assert observed_config(ENV_ID, CONFIG, None) is CONFIG
    assert observed_config(ENV_ID, CONFIG, ObservationRequest()) == CONFIG
    assert observed_config(ENV_ID, CONFIG, ObservationRequest(cameras=("corner2",))).cameras == ("corner2",)
    proprio_only = observed_config(ENV_ID, CONFIG, ObservationRequest(cameras=()))
    assert not proprio_only.use_images
    with caplog.at_level(logging.WARNING):
        unknown = observed_config(ENV_ID, CONFIG, ObservationRequest(cameras=("gripper_cam",)))
    assert not unknown.use_images and "gripper_cam" in caplog.text
    # A declaration never turns on what the evaluator turned off.
    no_images = replace(CONFIG, use_images=False)
    assert observed_config(ENV_ID, no_images, ObservationRequest(cameras=("corner",))) is no_images
    # Genesis's one camera: asked for, or not.
    assert observed_config("genesis/g1-v0", CONFIG, ObservationRequest(cameras=("ego",), depth=False)).use_images
    assert not observed_config("genesis/g1-v0", CONFIG, ObservationRequest(cameras=("ego",), depth=False)).depth
    assert not observed_config("genesis/g1-v0", CONFIG, ObservationRequest(cameras=())).use_images


def test_each_policy_is_sent_the_cameras_it_declared(tmp_path):
    declarations = {0: None, 1: {"cameras": []}, 2: {"cameras": ["corner2"]}, 3: {"cameras": "corner"}}
    deployments = {}
    for uid, declared in declarations.items():
        env = {"FIXTURE_RECORD": str(tmp_path / f"{uid}.jsonl")}
        if declared is not None:
            env["FIXTURE_OBSERVATION"] = json.dumps(declared)
        deployments[uid] = LocalDeployment(RECORDER, env=env)
    assert not any(start_all(list(deployments.values())))
    try:
        # One worker plays all four at once, so envs of different cameras share it (and are reused).
        records = evaluate_partition(
            ENV_ID, [MinerTarget(uid, d.base_url, d.pid, d.observation) for uid, d in deployments.items()],
            seeds=[5, 6], env_config=CONFIG, max_workers=1, miners_per_worker=4,
        )  # fmt: skip
    finally:
        for deployment in deployments.values():
            deployment.stop()
    assert not [r for r in records if r.error_kind]
    sent = {uid: [json.loads(line) for line in (tmp_path / f"{uid}.jsonl").read_text().splitlines()]
            for uid in declarations}  # fmt: skip
    assert {uid: {tuple(sorted(obs["rgb"])) for obs in observations} for uid, observations in sent.items()} == {
        0: {("corner", "corner2")},  # declared nothing: everything, as Kinitro's miners
        1: {()},  # proprio only: no frame rendered
        2: {("corner2",)},
        3: {("corner", "corner2")},  # malformed: read as no declaration, never less
    }
    assert all(not obs["cam_intrinsics"] for obs in sent[1]) and set(sent[2][0]["cam_intrinsics"]) == {"corner2"}
    # What a camera choice changes is the images: every policy played the same episodes.
    assert len({tuple(r.total_reward for r in records if r.uid == uid) for uid in declarations}) == 1


def test_a_replay_sends_the_policy_what_the_cycle_sent_it(tmp_path, monkeypatch):
    import sys

    from kinitro_dagster.sim.replay import replay_episode
    from kinitro_dagster.warehouse.records import CycleConfiguration, EpisodeRecord

    record = tmp_path / "sent.jsonl"
    monkeypatch.setenv("FIXTURE_RECORD", str(record))  # the policy server inherits both
    monkeypatch.setenv("FIXTURE_OBSERVATION", json.dumps({"cameras": ["corner2"]}))
    cycle = CycleConfiguration(env_ids=(ENV_ID,), episodes_per_env=1, eval_interval_blocks=100, max_timesteps=3,
                               action_timeout=0.5, eval_timeout=60.0, use_images=True, privileged_state=False,
                               pareto_temperature=1.0, cycle_timeout_seconds=7200, code_version="test")  # fmt: skip
    recorded = EpisodeRecord(uid=0, episode=0, seed=5, success=False, total_reward=0.0, steps=3, wall_seconds=0.1)
    replay = replay_episode(ENV_ID, cycle, recorded, RECORDER, tmp_path / "replay", python=sys.executable,
                            warmup_timeout=30.0)  # fmt: skip
    assert replay.replayed.error_kind is None and len(replay.frames) == 4  # the watch camera draws them all
    assert {tuple(json.loads(line)["rgb"]) for line in record.read_text().splitlines()} == {("corner2",)}
