"""Time `score_cycle` on full-subnet sizes; prints one JSON line of seconds per size.

    python benchmarks/bench_scoring.py

Each size is a random cycle of 50 episodes per env with priorities drawn from 1000 blocks (so ties
occur); the figure is the best of several runs after one warm-up, i.e. the cost of the rule itself.
Target (issue 2): 256 miners x 8 envs under 0.1 s on a 2-core machine.
"""

from __future__ import annotations

import json
import time

import numpy as np

from kinitro_dagster.scoring import score_cycle

SIZES = ((256, 8), (1024, 8), (256, 12))
EPISODES = 50
REPEATS = 5


def time_one(n_miners: int, n_envs: int, rng: np.random.Generator) -> float:
    success = rng.integers(0, EPISODES + 1, size=(n_miners, n_envs)) / EPISODES
    uids = rng.permutation(n_miners)
    priority = rng.integers(0, 1000, size=n_miners)
    live = np.ones(n_miners, dtype=bool)
    score_cycle(success, uids, priority, live, EPISODES)  # warm-up
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        score_cycle(success, uids, priority, live, EPISODES)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    rng = np.random.default_rng(2)
    seconds = {f"{m}x{e}": round(time_one(m, e, rng), 5) for m, e in SIZES}
    print(json.dumps({"benchmark": "score_cycle", "episodes_per_env": EPISODES, "seconds": seconds}))


if __name__ == "__main__":
    main()
