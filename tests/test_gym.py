"""The Gymnasium envs play the evaluator's episodes and return the evaluator's observations, bit for bit.

The evaluator's side is its own rollout loop (`episode.run_episode` on `make_env`) with a stand-in
for the HTTP client that keeps the exact bytes each `/act` request would carry and answers with a
policy's action through JSON, as a server does. The Gymnasium side is `gymnasium.make`.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from metaworld.policies import ENV_POLICY_MAP

from kinitro_dagster.gym import GYM_IDS, KinitroEnv, decode_observation, gym_id, to_policy_action
from kinitro_dagster.miners.policy_client import dump_observation
from kinitro_dagster.protocol import parse_action
from kinitro_dagster.sim.base import EnvConfig, StepResult, make_env
from kinitro_dagster.sim.episode import run_episode
from kinitro_dagster.sim.metaworld import from_metaworld_action
from kinitro_dagster.sim.registry import ENV_IDS, env_task_name
from kinitro_dagster.sim.seeds import episode_seed
from kinitro_dagster.warehouse.records import EpisodeRecord

os.environ.setdefault("MUJOCO_GL", "egl")

Policy = Callable[[dict], dict]  # wire observation -> wire action (`action` of an /act response)


class RecordingClient:
    """The evaluator's `PolicyClient`, minus the socket: what `run_episode` sends is kept as bytes."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.sent: list[bytes] = []  # the `obs` of every /act request, encoded by the evaluator's encoder

    def send_reset(self, task_config: dict) -> None:
        self.task_config = task_config

    def receive_reset(self) -> str:
        return "episode-0"

    def send_act(self, observation: dict) -> None:
        self.sent.append(dump_observation(observation))

    def poll(self, *, block: bool = False) -> bool:
        return True

    def receive_action(self):
        received = json.loads(self.sent[-1])  # what the policy server reads
        response = json.dumps({"action": self.policy(received)})  # what it answers
        return parse_action(json.loads(response))

    def close(self) -> None:
        pass


def evaluator_episode(
    env_id: str, config: EnvConfig, seed: int, policy: Policy
) -> tuple[RecordingClient, list[StepResult], EpisodeRecord]:
    env = make_env(env_id, config)
    client, results = RecordingClient(policy), []
    try:
        record = run_episode(env, client, uid=1, episode=0, seed=seed, on_step=lambda _, r: results.append(r))
    finally:
        env.close()
    assert record.error_kind is None, record.error
    return client, results, record


def random_actions(seed: int) -> Policy:
    """Seeded random wire actions, whatever the observation (a fresh policy replays the same ones)."""
    rng = np.random.default_rng(seed)
    return lambda _obs: {"continuous": {"ee_twist": rng.uniform(-1, 1, 6).tolist(), "gripper": [rng.uniform()]}}


def expert_actions(env_id: str) -> Policy:
    """MetaWorld's scripted expert on the privileged state, as a wire action."""
    expert = ENV_POLICY_MAP[env_task_name(env_id)]()

    def act(obs: dict) -> dict:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the experts warn whenever their raw action exceeds [-1, 1]
            action = from_metaworld_action(expert.get_action(np.asarray(obs["extra"]["state"])))
        return {"continuous": {"ee_twist": action.ee_twist.tolist(), "gripper": [action.gripper]}}

    return act


def as_flat(action: dict) -> np.ndarray:
    continuous = action["continuous"]
    return np.array([*continuous["ee_twist"], *continuous["gripper"]])


def as_numpy_dict(action: dict) -> dict:
    continuous = action["continuous"]
    return {"continuous": {"ee_twist": np.array(continuous["ee_twist"]), "gripper": np.array(continuous["gripper"])}}


def gym_episode(env: gymnasium.Env, seed: int, policy: Policy, action_form: Callable[[dict], object]) -> dict:
    observation, info = env.reset(seed=seed)
    observations, rewards, infos, ends = [observation], [], [info], []
    while not ends or not any(ends[-1]):
        observation, reward, terminated, truncated, info = env.step(action_form(policy(observation)))
        observations.append(observation)
        rewards.append(reward)
        infos.append(info)
        ends.append((terminated, truncated))
    return {"observations": observations, "rewards": rewards, "infos": infos, "ends": ends}


CASES = {
    # Production's settings, both cameras, a short episode: random actions, sent as NumPy dicts.
    "images": ("metaworld/push-v3", {"max_steps": 8, "use_images": True}, "random", as_numpy_dict),
    # The demo track's state: the scripted expert succeeds and the episode stops there; flat arrays.
    "state": (
        "metaworld/reach-v3",
        {"max_steps": 150, "use_images": False, "privileged_state": True},
        "expert",
        as_flat,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_gym_env_plays_the_evaluators_episode_and_sends_its_observations_bit_for_bit(case: str) -> None:
    env_id, knobs, policy_kind, action_form = CASES[case]
    seed = episode_seed("test secret", "0x5eed", env_id, 0)  # a seed as the evaluator draws them

    def policy() -> Policy:
        return random_actions(7) if policy_kind == "random" else expert_actions(env_id)

    client, results, record = evaluator_episode(env_id, EnvConfig(**knobs), seed, policy())
    with gymnasium.make(gym_id(env_id), **knobs) as env:
        env.reset(seed=seed + 1)  # an earlier episode on the same env changes nothing
        env.step(env.action_space.sample())
        played = gym_episode(env, seed, policy(), action_form)
    with gymnasium.make(gym_id(env_id), obs_format="arrays", **knobs) as env:
        arrays = gym_episode(env, seed, policy(), action_form)

    # The same episode: same length, end, rewards and success, step by step.
    assert len(played["rewards"]) == record.steps == len(results)
    assert played["rewards"] == [r.reward for r in results]
    assert math.fsum(played["rewards"]) == pytest.approx(record.total_reward, abs=0, rel=1e-12)
    assert [info["success"] for info in played["infos"][1:]] == [r.success for r in results]
    assert played["ends"][-1] == (record.success, not record.success)
    assert not any(any(end) for end in played["ends"][:-1])
    assert played["infos"][0]["episode_seed"] == seed and played["infos"][0]["task_config"] == client.task_config
    if case == "state":
        assert record.success and record.steps < knobs["max_steps"]  # stopped at the first success
    else:
        assert record.steps == knobs["max_steps"]

    # Every observation the evaluator sent, byte for byte, and the last one it would have sent.
    sent = [*client.sent, dump_observation(results[-1].observation)]
    assert [dump_observation(obs) for obs in played["observations"]] == sent
    assert played["observations"] == [json.loads(body) for body in sent]
    # Decoded, the arrays format is exactly the evaluator's pixels and numbers.
    for delivered, body in zip(arrays["observations"], sent, strict=True):
        expected = decode_observation(json.loads(body))
        assert delivered.keys() <= expected.keys()
        assert all(not expected[key] for key in expected.keys() - delivered.keys())
        for key, channel in delivered.items():
            assert channel.keys() == expected[key].keys()
            for name, array in channel.items():
                assert array.dtype == expected[key][name].dtype and np.array_equal(array, expected[key][name])
    assert arrays["rewards"] == played["rewards"]
    if knobs["use_images"]:
        first = arrays["observations"][0]["rgb"]["corner"]
        assert first.shape == (84, 84, 3) and first.dtype == np.uint8 and first.std() > 10.0


def test_gymnasium_makes_the_env_in_a_fresh_interpreter_by_naming_the_module(tmp_path: Path) -> None:
    script = (
        "import json, sys, gymnasium\n"
        "assert not [m for m in sys.modules if m.startswith('kinitro_dagster')]\n"
        "env = gymnasium.make('kinitro_dagster.gym:kinitro/metaworld-reach-v3', use_images=False, max_steps=3)\n"
        "obs, info = env.reset(seed=11)\n"
        "after, *_ = env.step([0.5, 0, 0, 0, 0, 0, 1])\n"
        "print(json.dumps([obs, after]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "MUJOCO_GL": "egl"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    there = json.loads(done.stdout.splitlines()[-1])

    env = make_env("metaworld/reach-v3", EnvConfig(use_images=False, max_steps=3))
    try:
        here = [env.reset(11), env.step(parse_action({"action": {"continuous": {
            "ee_twist": [0.5, 0, 0, 0, 0, 0], "gripper": [1]}}})).observation]  # fmt: skip
    finally:
        env.close()
    assert there == json.loads(json.dumps(here))


@pytest.mark.parametrize("obs_format", ["wire", "arrays"])
def test_gymnasium_env_checker_passes(obs_format: str) -> None:
    env = gymnasium.make("kinitro/metaworld-reach-v3", max_steps=8, obs_format=obs_format)
    with env, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    remarks = {str(w.message) for w in caught}
    if obs_format == "arrays":
        # Positions, velocities, camera matrices are unbounded (as in MetaWorld's own state space);
        # the checker remarks on every such Box, and on nothing else.
        remarks = {r for r in remarks if "observation space minimum value is -infinity" not in r}
        remarks = {r for r in remarks if "observation space maximum value is infinity" not in r}
    assert remarks == set()


def test_every_registry_env_has_a_gymnasium_id_in_the_kinitro_namespace() -> None:
    assert {f"kinitro/{e.replace('/', '-')}": e for e in ENV_IDS} == GYM_IDS
    assert gym_id("metaworld/button-press-topdown-v3") == "kinitro/metaworld-button-press-v3"  # an alias
    for gymnasium_id, env_id in GYM_IDS.items():
        spec = gymnasium.spec(gymnasium_id)
        assert (spec.namespace, spec.version) == ("kinitro", int(env_id.rsplit("-v", 1)[1]))
        assert spec.entry_point == "kinitro_dagster.gym:KinitroEnv" and spec.kwargs == {"env_id": env_id}


@pytest.fixture(scope="module")
def reach() -> Iterator[gymnasium.Env]:
    env = gymnasium.make("kinitro/metaworld-reach-v3", use_images=False, max_steps=3)
    yield env
    env.close()


STILL = [0.0] * 6 + [0.0]


def test_unseeded_resets_draw_31_bit_episode_seeds_that_replay(reach: gymnasium.Env) -> None:
    reach.reset(seed=5)
    _, first = reach.reset()
    _, second = reach.reset()
    assert first["episode_seed"] != second["episode_seed"]
    assert all(0 <= info["episode_seed"] < 2**31 for info in (first, second))
    replayed, _ = reach.reset(seed=first["episode_seed"])
    reach.reset(seed=5)
    again, info = reach.reset()
    assert info["episode_seed"] == first["episode_seed"] and again == replayed


@pytest.mark.parametrize(
    "action, why",
    [
        ([math.nan, 0, 0, 0, 0, 0, 0], "non-finite"),
        ([0.0] * 6, "7 numbers"),
        ({"continuous": {"ee_twist": [0.0] * 5, "gripper": [0.0]}}, "ee_twist must be 6 numbers"),
        ({"continuous": {"ee_twist": [0.0] * 6, "gripper": [0.0], "joints": [1.0]}}, "unknown keys"),
        ({"continuous": {"ee_twist": [True] * 6, "gripper": [0.0]}}, "non-number"),
    ],
)
def test_an_action_the_evaluator_refuses_raises_and_is_not_stepped(reach: gymnasium.Env, action, why: str) -> None:
    reach.reset(seed=1)
    with pytest.raises(ValueError, match=why):
        reach.step(action)
    *_, info = reach.step(STILL)
    assert info["steps"] == 1


def test_the_episode_is_truncated_at_max_steps_and_refuses_more(reach: gymnasium.Env) -> None:
    reach.reset(seed=2)
    ends = [reach.step(STILL)[2:4] for _ in range(3)]
    assert ends == [(False, False), (False, False), (False, True)]
    with pytest.raises(RuntimeError, match="call reset"):
        reach.step(STILL)


def test_unknown_options_are_refused_naming_the_evaluators_knobs() -> None:
    with pytest.raises(TypeError, match=r"\['max_steps', 'use_images', 'privileged_state'\]"):
        KinitroEnv("metaworld/reach-v3", image_size=64)
    with pytest.raises(ValueError, match="obs_format"):
        KinitroEnv("metaworld/reach-v3", obs_format="pixels")


def test_rgb_array_rendering_is_the_first_cameras_delivered_frame() -> None:
    with gymnasium.make("kinitro/metaworld-reach-v3", max_steps=2, obs_format="arrays", render_mode="rgb_array") as env:
        obs, _ = env.reset(seed=4)
        assert np.array_equal(env.render(), obs["rgb"]["corner"])
    with pytest.raises(ValueError, match="needs use_images=True"):
        KinitroEnv("metaworld/reach-v3", use_images=False, render_mode="rgb_array")


# -- the humanoid (genesis/g1-v0) ----------------------------------------------------------------


def test_humanoid_actions_are_43_joint_targets_and_its_privileged_state_is_refused() -> None:
    assert to_policy_action(np.full(43, 0.5), "genesis").joint_pos_target.tolist() == [0.5] * 43
    with pytest.raises(ValueError, match=r"joint_pos_target\(43\), 43 numbers; got shape \(7,\)"):
        to_policy_action(np.zeros(7), "genesis")
    with pytest.raises(ValueError, match="no privileged_state"):
        KinitroEnv("genesis/g1-v0", privileged_state=True)


def _hold(_obs: dict) -> dict:
    """Kinitro's default pose: the G1 stands about a second, then falls."""
    return {"continuous": {"joint_pos_target": [0.0] * 43}}


@pytest.mark.slow
def test_the_humanoid_plays_the_evaluators_episode_and_a_fall_terminates_it() -> None:
    env_id, knobs = "genesis/g1-v0", {"max_steps": 300, "use_images": False}
    seed = episode_seed("test secret", "0x5eed", env_id, 0)
    client, results, record = evaluator_episode(env_id, EnvConfig(**knobs), seed, _hold)
    with gymnasium.make(gym_id(env_id), obs_format="arrays", **knobs) as env:
        assert env.action_space.shape == (43,) and env.metadata["render_fps"] == 50
        played = gym_episode(env, seed, _hold, lambda action: np.array(action["continuous"]["joint_pos_target"]))
        assert all(env.observation_space.contains(observation) for observation in played["observations"])

    assert not record.success and record.steps < knobs["max_steps"]  # it fell
    assert len(played["rewards"]) == record.steps
    assert played["ends"][-1] == (True, False)  # a fall terminates the episode: not a truncation
    assert played["rewards"] == [r.reward for r in results] and played["rewards"][-1] == -1.0
    sent = [*client.sent, dump_observation(results[-1].observation)]
    for delivered, body in zip(played["observations"], sent, strict=True):
        expected = decode_observation(json.loads(body))
        assert delivered["extra"] == expected["extra"]  # the prompt and task type, as text
        for name, array in delivered["proprio"].items():
            assert np.array_equal(array, expected["proprio"][name])

    with gymnasium.make(gym_id(env_id), max_steps=2, render_mode="rgb_array") as env:  # the ego camera, wire format
        observation, _ = env.reset(seed=seed)
        assert env.observation_space.contains(observation)
        frame = decode_observation(observation)["rgb"]["ego"]
        assert frame.shape == (84, 84, 3) and np.array_equal(env.render(), frame)
        observation, *_ = env.step(env.action_space.sample())
        assert env.observation_space.contains(observation)
