"""Evaluate the learned reach policy (and, for comparison, the random policy) in the real evaluator.

Run from the repository root in the project's venv (torch is not needed there: the policy runs in
its own runtime, built from its requirements.txt as for any miner):

    MUJOCO_GL=egl .venv/bin/python examples/miners/learned_reach/evaluate.py --episodes 50 [--mode docker]

Each policy is published to a local hub cache and evaluated by `evaluate_env_partition`, as a
cycle's env partition is: production episode settings (500 steps, both cameras, no privileged
state), episode seeds 0..N-1 (`--first-seed` to move them), over the real HTTP protocol. Docker
mode (default) serves it from its runtime image on the miner-runner image; local mode from a venv
runtime under <state dir>/runtimes. Prints one line per episode and the success rates.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the snapshots are in a local hub cache

from kinitro_dagster.miners.deployment_pool import DeploymentPool
from kinitro_dagster.miners.docker_deployment import DockerOptions
from kinitro_dagster.miners.hub import fetch_snapshot, publish_to_cache
from kinitro_dagster.miners.runtimes import RuntimeSettings
from kinitro_dagster.settings import state_dir
from kinitro_dagster.sim.partition import PartitionSettings, PolicyUnderTest, evaluate_env_partition

HERE = Path(__file__).resolve().parent
MINERS = {"learned_reach": HERE, "random_policy": HERE.parent / "random_policy"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="metaworld/reach-v3")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--mode", choices=("docker", "local"), default="docker")
    parser.add_argument("--image", default=os.environ.get("KINITRO_EXECUTOR_MINER_DEPLOYMENT_IMAGE",
                                                          "kinitro/miner-runner:v1"))  # fmt: skip
    parser.add_argument("--miners", nargs="+", choices=sorted(MINERS), default=sorted(MINERS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("kinitro_dagster.sim").setLevel(logging.WARNING)

    seeds = list(range(args.first_seed, args.first_seed + args.episodes))
    runtimes = RuntimeSettings(root=state_dir() / "runtimes")
    with tempfile.TemporaryDirectory(prefix="learned-reach-hub-") as hub:
        policies = []
        for uid, name in enumerate(args.miners, start=1):
            repo = f"examples/{name.replace('_', '-')}"
            snapshot = fetch_snapshot(repo, publish_to_cache(MINERS[name], repo, cache_dir=Path(hub)),
                                      cache_dir=Path(hub))  # fmt: skip
            policies.append(PolicyUnderTest(uid, snapshot.path, repo=snapshot.repo, revision=snapshot.revision))
        docker = DockerOptions(image=args.image, ttl_s=0) if args.mode == "docker" else None
        pool = DeploymentPool(prune=False) if docker else None
        started = time.monotonic()
        try:
            settings = PartitionSettings(docker=docker, runtimes=runtimes)
            records = evaluate_env_partition(args.env, policies, seeds, settings, docker_pool=pool)
        finally:
            if pool is not None:
                pool.close()
    elapsed = time.monotonic() - started
    for record in records:
        outcome = "success" if record.success else "failure"
        error = f" [{record.error_kind}: {record.error}]" if record.error_kind else ""
        print(f"{args.miners[record.uid - 1]} seed {record.seed}: {outcome} in {record.steps} steps{error}")
    print(f"{args.env}, seeds {seeds[0]}..{seeds[-1]}, {args.mode} mode, {elapsed:.0f} s:")
    for uid, name in enumerate(args.miners, start=1):
        mine = [r for r in records if r.uid == uid]
        wins = sum(r.success for r in mine)
        errors = sum(r.error_kind is not None for r in mine)
        steps = sorted(r.steps for r in mine if r.success)
        median = f", median {steps[len(steps) // 2]} steps to success" if steps else ""
        print(f"  {name}: {wins}/{len(mine)} succeeded ({wins / len(mine):.0%}){median}, {errors} ended by an error")


if __name__ == "__main__":
    main()
