"""The genesis family's costs against MetaWorld's, in one run; prints one JSON line.

    python benchmarks/bench_genesis.py [--actions 100]

Each measurement runs in a fresh subprocess (one env family, one process, as a rollout worker):
- `genesis_cold`: Genesis with empty caches (a temporary HOME: no compiled kernels, no processed
  meshes): its start (`start_s`: import and `gs.init`), the first scene (`first_scene_s`: model
  parsing, kernel compilation, scene build), then actions with the camera.
- `genesis_warm`: the same with this host's caches, as every run after the first (the genesis image
  ships them): start, first scene, a second scene (another seed), a reset in place (the same seed
  again), and actions per second with the camera and, in a second env, without.
- `metaworld`: reach-v3 with both 84x84 cameras and without: start (first env) and actions per second.
`peak_rss_mib`: the process's peak resident memory (ru_maxrss), i.e. one worker's.
An action is one policy step: for Genesis, two 10 ms physics steps (and a frame with the camera);
for MetaWorld, one env step (and two frames). Zero actions (the robot holds its default pose until
it falls; the run resets and goes on), so no policy or HTTP is in the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
started = time.perf_counter()
import numpy as np
from kinitro_dagster.protocol import PolicyAction
from kinitro_dagster.sim.base import EnvConfig, make_env

family, actions, measure_second = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"

def rate(env, action, seed):
    env.reset(seed)
    count, begun = 0, time.perf_counter()
    while count < actions:
        count += 1
        if env.step(action).done:
            env.reset(seed)  # the same scene: a reset in place (its cost is in the rate)
    return count / (time.perf_counter() - begun)

out = {}
if family == "genesis":
    from kinitro_dagster.sim import genesis_g1
    genesis_g1.init_genesis()
    out["start_s"] = time.perf_counter() - started
    env = make_env("genesis/g1-v0", EnvConfig(use_images=True))
    t = time.perf_counter(); env.reset(0); out["first_scene_s"] = time.perf_counter() - t
    hold = PolicyAction(joint_pos_target=np.zeros(genesis_g1.JOINT_COUNT))
    if measure_second:
        t = time.perf_counter(); env.reset(1); out["second_scene_s"] = time.perf_counter() - t
        t = time.perf_counter(); env.reset(1); out["reset_in_place_s"] = time.perf_counter() - t
    out["camera_actions_per_s"] = rate(env, hold, 1)
    if measure_second:
        bare = make_env("genesis/g1-v0", EnvConfig(use_images=False))
        out["no_camera_actions_per_s"] = rate(bare, hold, 1)
else:
    env = make_env("metaworld/reach-v3", EnvConfig(use_images=True))
    env.reset(0)
    out["start_s"] = time.perf_counter() - started
    hold = PolicyAction(ee_twist=np.zeros(6), gripper=0.0)
    out["camera_actions_per_s"] = rate(env, hold, 0)
    bare = make_env("metaworld/reach-v3", EnvConfig(use_images=False))
    out["no_camera_actions_per_s"] = rate(bare, hold, 0)
out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def _child(family: str, actions: int, *, second: bool, home: str | None = None) -> dict:
    env = {**os.environ, "MUJOCO_GL": "egl", "PYTHONPATH": str(REPO)}
    if home is not None:
        # Empty caches for Genesis (kernels, meshes) but the same G1 assets (already fetched).
        from kinitro_dagster.sim.g1_model import assets_dir

        env.update(HOME=home, KINITRO_G1_ASSETS_DIR=str(assets_dir()))
    result = subprocess.run([sys.executable, "-c", CHILD, family, str(actions), "1" if second else "0"],
                            env=env, capture_output=True, text=True, timeout=3600)  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"{family} benchmark failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-genesis-home-") as home:
        cold = _child("genesis", args.actions, second=False, home=home)
    warm = _child("genesis", args.actions, second=True)
    metaworld = _child("metaworld", args.actions * 5, second=True)
    print(json.dumps({
        "benchmark": "genesis",
        "cpu_count": os.cpu_count(),
        "actions": args.actions,
        "genesis_cold": cold,
        "genesis_warm": warm,
        "metaworld": metaworld,
        "camera_rate_metaworld_over_genesis":
            round(metaworld["camera_actions_per_s"] / warm["camera_actions_per_s"], 1),
        "no_camera_rate_metaworld_over_genesis":
            round(metaworld["no_camera_actions_per_s"] / warm["no_camera_actions_per_s"], 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
