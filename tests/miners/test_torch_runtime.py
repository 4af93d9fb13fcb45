"""Kinitro's miner template with its requirements.txt as `kinitro miner init` writes it (torch>=2.0.0,
Pillow, huggingface_hub, gymnasium, ...), in its own docker-mode runtime, on a real dockerd.

The runtime is resolved and installed from PyPI as production does it, wheels only: PyPI's plain
`torch` on Linux is a CUDA build (it runs on the CPU), a few GB with its nvidia-* wheels. The
runtime image (`kinitro/runtime:<id>`) stays in dockerd's store after the test, so a rerun on the
same machine (CI reruns here) finds it there and pays only the resolution (`uv pip compile`, a few
seconds); a new torch release, or a rebuilt miner-runner image, makes a new one. Nothing here
deletes it: `docker image rm kinitro/runtime:<tag>` does.

Printed (`pytest -s`): the build (cold, or found in the store), the size it adds to the runner
image, the second miner's reuse, each miner's policy warm-up.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from kinitro_dagster.miners.deployment_pool import DeploymentPool
from kinitro_dagster.miners.docker_deployment import DockerOptions
from kinitro_dagster.miners.hub import fetch_snapshot, publish_to_cache
from kinitro_dagster.miners.runtimes import RuntimeSettings, declared_requirements, ensure_image_runtime
from kinitro_dagster.sim.base import EnvConfig
from kinitro_dagster.sim.partition import PartitionSettings, PolicyUnderTest, evaluate_env_partition

os.environ.setdefault("MUJOCO_GL", "egl")

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "tests" / "fixtures" / "policies" / "kinitro_template"
ENV_ID = "metaworld/reach-v3"
CAMERAS = EnvConfig(use_images=True, max_steps=10)
# What the runtime must import, offline and as the policy's user, beyond what serves the policy.
TEMPLATE_IMPORTS = "import torch, PIL, huggingface_hub, gymnasium; print(torch.__version__, torch.ones(2).sum().item())"


def published(tmp_path: Path, uid: int, repo: str, policy: Path = TEMPLATE) -> PolicyUnderTest:
    """`policy` (the template), files unchanged, published under `repo` to a local hub cache."""
    source = tmp_path / "src" / repo.replace("/", "--")
    shutil.copytree(policy, source, ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "hub"
    snapshot = fetch_snapshot(repo, publish_to_cache(source, repo, cache_dir=cache), cache_dir=cache)
    return PolicyUnderTest(uid, snapshot.path, repo=snapshot.repo, revision=snapshot.revision)


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(2400)  # a cold build downloads ~3 GB of wheels (1800 s is the build's own limit)
def test_kinitro_template_runs_in_its_torch_runtime_which_a_second_miner_reuses(docker_image, tmp_path, caplog):
    assert "torch>=2.0.0" in declared_requirements(TEMPLATE)  # the template's own line, not pinned here
    settings = RuntimeSettings(root=tmp_path / "state" / "runtimes")  # the production limits (6Gi, 1800 s)
    alice = published(tmp_path, 1, "alice/kinitro-template")
    bob = published(tmp_path, 2, "bob/kinitro-template")

    started = time.monotonic()
    runtime = ensure_image_runtime(alice.policy_dir, settings, docker_image)
    first_s = time.monotonic() - started
    assert runtime is not None and runtime.location == f"kinitro/runtime:{runtime.id[:16]}"
    torch_pin = next(pin for pin in runtime.pins if pin.startswith("torch=="))
    how = "built cold" if runtime.built else "found in dockerd's store (built by an earlier run), resolved"
    print(f"\ntorch runtime {runtime.location} ({torch_pin}, {len(runtime.pins)} packages): {how} in {first_s:.1f} s, "
          f"adds {runtime.size_bytes / 2**20:.0f} MiB to {docker_image} "
          f"(limit {settings.max_size_bytes / 2**20:.0f} MiB)")  # fmt: skip
    assert runtime.size_bytes <= settings.max_size_bytes

    # The runtime's packages import offline, read-only, as the policy's user.
    check = subprocess.run(["docker", "run", "--rm", "--network", "none", "--read-only", runtime.location,
                            "python", "-c", TEMPLATE_IMPORTS], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert check.returncode == 0, check.stderr[-3000:]
    version, total = check.stdout.split()
    assert (version.partition("+")[0], total) == (torch_pin.removeprefix("torch=="), "2.0")  # e.g. 2.15.0+cu132

    # Another miner, same requirements: no resolution, no build.
    started = time.monotonic()
    reused = ensure_image_runtime(bob.policy_dir, settings, docker_image)
    reuse_s = time.monotonic() - started
    print(f"second miner ({bob.repo}) reused it in {reuse_s * 1e3:.1f} ms")
    assert (reused.id, reused.location, reused.built) == (runtime.id, runtime.location, False)
    assert reuse_s < 1.0

    # Both play an episode with cameras through the evaluator's partition, in docker mode.
    pool = DeploymentPool(prune=False)
    try:
        with caplog.at_level(logging.INFO, logger="kinitro_dagster"):
            records = evaluate_env_partition(
                ENV_ID, [alice, bob], [17], PartitionSettings(
                    env=CAMERAS, max_workers=1, docker=DockerOptions(image=docker_image, ttl_s=0), runtimes=settings),
                docker_pool=pool,
            )  # fmt: skip
    finally:
        pool.close()
    played = [(r.uid, r.steps, r.error_kind, r.error) for r in records]
    assert played == [(uid, CAMERAS.max_steps, None, None) for uid in (1, 2)]  # random: no goal in 10 steps
    healthy = {r.repo: r for r in caplog.records if r.getMessage().startswith("policy container healthy")}
    assert set(healthy) == {alice.repo, bob.repo}
    for repo, record in healthy.items():
        assert record.image == runtime.location  # served from the torch runtime, not the base image
        print(f"policy warm-up {repo}: {record.warmup_s:.2f} s")


# -- a learned policy (examples/miners/learned_reach): torch==2.15.0, weights in the snapshot --------

LEARNED = REPO / "examples" / "miners" / "learned_reach"
RANDOM = REPO / "examples" / "miners" / "random_policy"
# Production observations (cameras, no privileged state: `extra` is {}) and physics (Kinitro's
# randomization, on), shorter episodes.
REACH = EnvConfig(use_images=True, privileged_state=False, max_steps=150)
REACH_SEEDS = list(range(100, 108))
# Trained before physics randomization: it reached 8/8 of these without it and reaches 4/8 with it
# (at 150 steps and at 500 alike); random reaches none.
LEARNED_MIN_WINS = 3


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_learned_policy_serves_from_its_torch_runtime_and_reaches_goals_random_does_not(docker_image, tmp_path, caplog):
    from kinitro_dagster.miners.docker_deployment import DockerDeployment
    from kinitro_dagster.miners.policy_client import PolicyClient
    from kinitro_dagster.sim.metaworld import MetaWorldEnv

    settings = RuntimeSettings(root=tmp_path / "state" / "runtimes")
    learned = published(tmp_path, 1, "carol/learned-reach", LEARNED)
    random = published(tmp_path, 2, "dave/random", RANDOM)
    started = time.monotonic()
    runtime = ensure_image_runtime(learned.policy_dir, settings, docker_image)
    how = "built cold" if runtime.built else "found in dockerd's store, resolved"
    print(f"\nlearned policy's runtime {runtime.location}: {how} in {time.monotonic() - started:.1f} s, "
          f"adds {runtime.size_bytes / 2**20:.0f} MiB")  # fmt: skip
    assert "torch==2.15.0" in runtime.pins

    pool = DeploymentPool(prune=False)
    try:
        with caplog.at_level(logging.INFO, logger="kinitro_dagster"):
            records = evaluate_env_partition(
                ENV_ID, [learned, random], REACH_SEEDS, PartitionSettings(
                    env=REACH, max_workers=1, docker=DockerOptions(image=docker_image, ttl_s=0), runtimes=settings),
                docker_pool=pool,
            )  # fmt: skip
    finally:
        pool.close()
    assert [(r.uid, r.error_kind, r.error) for r in records if r.error_kind] == []
    healthy = {r.repo: r for r in caplog.records if r.getMessage().startswith("policy container healthy")}
    assert healthy[learned.repo].image == runtime.location and healthy[random.repo].image == docker_image
    print(f"policy warm-up: learned {healthy[learned.repo].warmup_s:.2f} s (imports torch, loads its weights), "
          f"random {healthy[random.repo].warmup_s:.2f} s")  # fmt: skip
    wins = {uid: [r.seed for r in records if r.uid == uid and r.success] for uid in (1, 2)}
    print(f"seeds {REACH_SEEDS[0]}..{REACH_SEEDS[-1]}, {REACH.max_steps} steps: learned reached {len(wins[1])}, "
          f"random {len(wins[2])}")  # fmt: skip
    assert len(wins[1]) >= LEARNED_MIN_WINS and wins[2] == []

    # Its actions, step by step: hold still once, then finite and varying (not a constant policy).
    actions = []
    options = DockerOptions(image=runtime.location, ttl_s=0)
    with (
        MetaWorldEnv(ENV_ID, REACH) as env,
        DockerDeployment(learned.policy_dir, options=options, repo=learned.repo, revision=learned.revision) as server,
        PolicyClient(server.base_url) as client,
    ):
        observation = env.reset(REACH_SEEDS[0])
        client.reset(env.task_config())
        for _ in range(12):
            action = client.act(observation)
            actions.append([*action.ee_twist, action.gripper])
            observation = env.step(action).observation
    actions = np.asarray(actions)
    assert np.isfinite(actions).all()
    assert (actions[0] == 0).all()  # the first step holds still (policy.py)
    assert np.ptp(actions[1:, :3], axis=0).max() > 0.05 and np.abs(actions[1:, :3]).max() > 0.2
