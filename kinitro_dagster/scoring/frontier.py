"""The ε-Pareto front (DESIGN §8, step 6): reported to analysts, never used for payment.

a ≻ b iff for every env `s[a,e] ≥ s[b,e] − ε_e` and for some env `s[a,e] > s[b,e] + ε_e`, with
`ε_e = max(gap[a,e], gap[b,e])`. A miner is on the front iff no other miner ≻ it. The relation is
antisymmetric but not transitive, so the front can in principle be empty.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from kinitro_dagster.scoring.thresholds import threshold_gaps
from kinitro_dagster.scoring.validation import check_rule_parameters, check_success


def frontier_from_gaps(success: NDArray[np.float64], gaps: NDArray[np.float64]) -> NDArray[np.bool_]:
    """On-front flag per row; one M x M comparison per env, no loop over miner pairs."""
    n_miners, n_envs = success.shape
    # Row a, column b: does a dominate b?
    never_worse = np.ones((n_miners, n_miners), dtype=bool)
    somewhere_better = np.zeros((n_miners, n_miners), dtype=bool)
    for e in range(n_envs):
        s_a = success[:, None, e]
        s_b = success[None, :, e]
        eps = np.maximum(gaps[:, None, e], gaps[None, :, e])
        never_worse &= s_a >= s_b - eps
        somewhere_better |= s_a > s_b + eps
    dominates = never_worse & somewhere_better
    return ~dominates.any(axis=0)


def pareto_frontier(
    success: ArrayLike, n_episodes: int, *, z: float = 1.5, min_gap: float = 0.02, max_gap: float = 0.10
) -> NDArray[np.bool_]:
    """ε-Pareto front flag per row of `success` (M x E rates), with ε from the §8 threshold gaps."""
    n = check_rule_parameters(n_episodes, z, min_gap, max_gap)
    rates = check_success(success)
    return frontier_from_gaps(rates, threshold_gaps(rates, n, z, min_gap, max_gap))
