"""`score_cycle`: one cycle's success table in, points, weights and analyst views out (DESIGN §8)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from kinitro_dagster.scoring.frontier import frontier_from_gaps
from kinitro_dagster.scoring.subsets import points_from_winners, rank_order, subset_winners
from kinitro_dagster.scoring.thresholds import (
    MAX_GAP,
    MIN_GAP,
    THRESHOLD_Z,
    threshold_gaps,
    thresholds_from_gaps,
)
from kinitro_dagster.scoring.validation import check_cycle_inputs, check_temperature
from kinitro_dagster.scoring.weights import cycle_weights


@dataclass(frozen=True, slots=True, eq=False)
class CycleScores:
    """The outcome of one cycle; every per-miner array has one entry per input row, in input order.

    Attributes:
        uids: (M,) the miners' uids, as given.
        points: (M,) int, `Σ |S|` over the env subsets S the miner won.
        weights: (M,) float, the emission share. When `has_weights` is True they are >= 0 and sum to 1
            (within 1e-9). When `has_weights` is False (nobody won a subset and nobody is live) they
            are all 0 and **no weights must be published** for this cycle.
        has_weights: whether this cycle publishes weights at all.
        thresholds: (M, E) float, `T[m, e]`: a success rate strictly above it beats miner m on env e.
        gaps: (M, E) float, the clipped margin in `T = min(s + gap, 1)`; also the ε of the front.
        frontier: (M,) bool, on the ε-Pareto front (for analysts; not used for payment).
        subset_winners: (2^E,) int, for env-subset bitmask S (bit e = env column e) the *row index* of
            its winner, or -1 when nobody wins S; entry 0 (the empty subset) is always -1.

    The arrays are read-only: a score is a record of what was decided.
    """

    uids: NDArray[np.int64]
    points: NDArray[np.int64]
    weights: NDArray[np.float64]
    has_weights: bool
    thresholds: NDArray[np.float64]
    gaps: NDArray[np.float64]
    frontier: NDArray[np.bool_]
    subset_winners: NDArray[np.int64]


def score_cycle(
    success: ArrayLike,
    uids: ArrayLike,
    priority: ArrayLike,
    live: ArrayLike,
    n_episodes: int,
    *,
    temperature: float = 1.0,
    z: float = THRESHOLD_Z,
    min_gap: float = MIN_GAP,
    max_gap: float = MAX_GAP,
) -> CycleScores:
    """Score one cycle by DESIGN §8.

    Args:
        success: (M, E) success rates in [0, 1]; an episode that did not run counts as a failure.
        uids: (M,) unique integer uids (0..65535).
        priority: (M,) first-seen block of each miner's current (repo, revision); lower is earlier,
            ties go to the lower uid.
        live: (M,) bool, completed at least one episode without an infrastructure error. It only
            matters when nobody wins a subset (then live miners share the weight evenly).
        n_episodes: episodes per env in the cycle (the `n` of the threshold), >= 1.
        temperature: τ of `softmax(points / τ)`, > 0.
        z, min_gap, max_gap: threshold parameters (step 1).

    Raises:
        ValueError: naming the argument and, where there is one, the uid and env column at fault.
    """
    tau = check_temperature(temperature)
    inputs = check_cycle_inputs(
        success, uids, priority, live, n_episodes, z=z, min_gap=min_gap, max_gap=max_gap
    )
    n_miners, n_envs = inputs.success.shape

    gaps = threshold_gaps(inputs.success, inputs.n_episodes, float(z), float(min_gap), float(max_gap))
    thresholds = thresholds_from_gaps(inputs.success, gaps)
    winners = subset_winners(inputs.success, thresholds, rank_order(inputs.uids, inputs.priority))
    points = points_from_winners(winners, n_miners, n_envs)
    weights, has_weights = cycle_weights(points, inputs.live, tau)
    frontier = frontier_from_gaps(inputs.success, gaps)

    arrays = (inputs.uids, points, weights, thresholds, gaps, frontier, winners)
    for array in arrays:
        array.setflags(write=False)
    return CycleScores(
        uids=inputs.uids,
        points=points,
        weights=weights,
        has_weights=has_weights,
        thresholds=thresholds,
        gaps=gaps,
        frontier=frontier,
        subset_winners=winners,
    )
