"""One test per clause of the scoring rule (DESIGN §8), written from the rule's text."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from kinitro_dagster.scoring import CycleScores, score_cycle

N = 50  # episodes per env: the gap is 0.10 at s = 0.5 and shrinks towards the extremes


def score(success, uids=None, priority=None, live=None, n=N, **kwargs) -> CycleScores:
    success = np.asarray(success, dtype=float)
    m = success.shape[0]
    uids = list(range(m)) if uids is None else uids
    priority = list(range(m)) if priority is None else priority  # row order = commit order by default
    live = [True] * m if live is None else live
    return score_cycle(success, uids, priority, live, n, **kwargs)


def mask(*envs: int) -> int:
    return sum(1 << e for e in envs)


# Step 1: thresholds


@pytest.mark.parametrize(
    ("s", "n", "expected"),
    [
        (0.5, 50, 0.6),  # 1.5·sqrt(.25/50) = 0.106 → capped at max_gap 0.10
        (0.9, 100, 0.9 + 1.5 * math.sqrt(0.9 * 0.1 / 100)),  # unclipped gap 0.045
        (0.0, 1000, 0.02),  # p clipped to .01: 1.5·sqrt(.0099/1000) = .0047 → raised to min_gap .02
        (0.95, 10, 1.0),  # 0.95 + 0.10 capped at 1: nobody can beat it
        (1.0, 50, 1.0),
    ],
)
def test_threshold_is_success_plus_clipped_gap_capped_at_one(s: float, n: int, expected: float) -> None:
    result = score([[s]], n=n)
    assert result.thresholds[0, 0] == pytest.approx(expected, abs=1e-12)


def test_thresholds_are_per_miner_and_per_env() -> None:
    result = score([[0.5, 0.9], [0.1, 0.0]], n=100)
    assert result.thresholds.shape == (2, 2)
    assert len({float(t) for t in result.thresholds.ravel()}) == 4


def test_threshold_parameters_change_the_gap() -> None:
    result = score([[0.5]], n=50, z=1.0, min_gap=0.0, max_gap=1.0)
    assert result.thresholds[0, 0] == pytest.approx(0.5 + math.sqrt(0.25 / 50), abs=1e-12)


# Step 2: subset winners


def test_lone_miner_takes_all() -> None:
    result = score([[0.3, 0.7, 0.05]])
    assert result.points.tolist() == [3 * 2**2]  # every subset: Σ|S| = E·2^(E-1)
    assert (result.subset_winners[1:] == 0).all()
    assert result.weights.tolist() == [1.0]


def test_identical_later_copy_gets_nothing() -> None:
    original = [0.6, 0.4, 0.8]
    result = score([original, original], uids=[5, 9], priority=[100, 200])
    assert result.points.tolist() == [12, 0]
    assert result.weights.tolist() == [1.0, 0.0]


def test_later_copy_within_the_gap_gets_nothing() -> None:
    result = score([[0.50, 0.50], [0.59, 0.59]])  # T = 0.60 on both envs: 0.59 does not beat it
    assert result.points.tolist() == [4, 0]


def test_later_miner_beating_earlier_threshold_on_every_env_wins_everything() -> None:
    result = score([[0.50, 0.30], [0.61, 0.41]])  # earlier T ≈ [0.60, 0.397]
    assert result.points.tolist() == [0, 4]  # E = 2: {0}, {1}, {0, 1} → 1 + 1 + 2
    assert (result.subset_winners[1:] == 1).all()


def test_trade_off_between_specialists_splits_points_by_subset() -> None:
    earlier, later = [0.9, 0.1], [0.1, 0.9]
    result = score([earlier, later])
    # {0}: nobody beats the earlier miner on env 0. {1}: the later one beats it there.
    # {0, 1}: the later miner does not beat the earlier one on *all* of it, so the earlier one keeps it.
    assert result.subset_winners[mask(0)] == 0
    assert result.subset_winners[mask(1)] == 1
    assert result.subset_winners[mask(0, 1)] == 0
    assert result.points.tolist() == [1 + 2, 1]


def test_later_miner_must_beat_every_earlier_miner() -> None:
    # Row 2 beats row 0 on env 0 but not row 1, which already beat row 0 there.
    result = score([[0.2, 0.9], [0.5, 0.1], [0.35, 0.1]])
    assert result.subset_winners[mask(0)] == 1
    assert result.points[2] == 0


def test_lower_priority_value_is_earlier() -> None:
    same = [0.5, 0.5]
    result = score([same, same], uids=[1, 2], priority=[300, 100])
    assert result.points.tolist() == [0, 4]


def test_equal_priority_goes_to_lower_uid() -> None:
    same = [0.5, 0.5]
    result = score([same, same], uids=[7, 3], priority=[100, 100])
    assert result.points.tolist() == [0, 4]


def test_zero_success_on_an_env_of_the_subset_cannot_win_it() -> None:
    result = score([[0.0, 0.8]])  # alone, earliest, but 0 % on env 0
    assert result.subset_winners[mask(0)] == -1
    assert result.subset_winners[mask(0, 1)] == -1
    assert result.subset_winners[mask(1)] == 0
    assert result.points.tolist() == [1]


def test_miner_at_zero_everywhere_gets_no_weight() -> None:
    result = score([[0.0, 0.0], [0.3, 0.2]])  # earlier and live, but never succeeded
    assert result.points.tolist() == [0, 4]
    assert result.weights[0] == 0.0


def test_subset_nobody_wins_is_left_unassigned() -> None:
    # Only subsets containing env 1 are blocked; the rest of the table stands.
    result = score([[0.5, 0.0], [0.5, 0.0]])
    assert result.subset_winners[mask(0)] == 0
    assert result.subset_winners[mask(1)] == -1
    assert result.subset_winners[mask(0, 1)] == -1
    assert result.subset_winners[0] == -1  # the empty subset is never scored


# Step 3: points


def test_points_are_the_sizes_of_the_subsets_won() -> None:
    result = score([[0.9, 0.1, 0.1], [0.1, 0.9, 0.9]])
    for row in range(2):
        won = [s for s in range(1, 8) if result.subset_winners[s] == row]
        assert result.points[row] == sum(bin(s).count("1") for s in won)
    assert result.points.dtype == np.int64


# Step 4: weights


def test_weights_are_softmax_of_points_over_miners_with_points() -> None:
    result = score([[0.9, 0.1], [0.1, 0.9], [0.0, 0.0]])
    assert result.points.tolist() == [3, 1, 0]
    e3, e1 = math.exp(3.0), math.exp(1.0)
    assert result.weights.tolist() == pytest.approx([e3 / (e3 + e1), e1 / (e3 + e1), 0.0], abs=1e-15)


def test_temperature_flattens_the_softmax() -> None:
    result = score([[0.9, 0.1], [0.1, 0.9]], temperature=2.0)
    e3, e1 = math.exp(1.5), math.exp(0.5)
    assert result.weights.tolist() == pytest.approx([e3 / (e3 + e1), e1 / (e3 + e1)], abs=1e-15)


def test_live_miner_without_points_gets_no_weight_when_someone_has_points() -> None:
    result = score([[0.5], [0.5]], live=[True, True])
    assert result.weights.tolist() == [1.0, 0.0]


def test_nobody_with_points_means_uniform_over_live_miners() -> None:
    result = score([[0.0], [0.0], [0.0]], live=[True, False, True])
    assert result.has_weights
    assert result.weights.tolist() == [0.5, 0.0, 0.5]


def test_nobody_live_and_nobody_with_points_publishes_no_weights() -> None:
    result = score([[0.0], [0.0]], live=[False, False])
    assert not result.has_weights
    assert result.weights.tolist() == [0.0, 0.0]


def test_empty_cycle_publishes_no_weights() -> None:
    result = score(np.zeros((0, 3)))
    assert not result.has_weights
    assert result.points.shape == (0,)
    assert result.weights.shape == (0,)
    assert (result.subset_winners == -1).all()


def test_weights_are_non_negative_and_sum_to_one() -> None:
    rng = np.random.default_rng(7)
    success = rng.integers(0, N + 1, size=(256, 8)) / N
    result = score(success, priority=rng.integers(0, 50, size=256))
    assert result.has_weights
    assert (result.weights >= 0).all()
    assert abs(result.weights.sum() - 1.0) <= 1e-9


def test_weights_survive_huge_points_without_overflow() -> None:
    # 12 envs: the generalist wins every subset but {11}, 12·2^11 - 1 points; exp(24575) is inf.
    generalist = [0.9] * 11 + [0.1]
    specialist = [0.1] * 11 + [0.9]
    result = score([generalist, specialist])
    assert result.points.tolist() == [12 * 2**11 - 1, 1]
    assert np.isfinite(result.weights).all()
    assert result.weights.tolist() == [1.0, 0.0]  # exp(1 - 24575) underflows to 0


# Step 6: ε-Pareto front


def test_frontier_excludes_miners_dominated_beyond_the_gap() -> None:
    result = score([[0.9, 0.9], [0.5, 0.5], [0.85, 0.95], [0.2, 0.95]])
    # Row 1 is dominated by row 0. Row 2 is within ε of row 0 on both envs. Row 3 ties row 2 on env 1
    # and is beaten by far more than ε on env 0, so rows 0 and 2 dominate it.
    assert result.frontier.tolist() == [True, False, True, False]


def test_frontier_keeps_specialists() -> None:
    result = score([[0.9, 0.1], [0.1, 0.9]])
    assert result.frontier.tolist() == [True, True]


# Shape of the result


def test_results_follow_input_row_order() -> None:
    rows = [[0.1, 0.9], [0.9, 0.1], [0.5, 0.5]]
    result = score(rows, uids=[30, 10, 20], priority=[3, 1, 2])
    assert result.uids.tolist() == [30, 10, 20]
    assert result.thresholds.shape == (3, 2)
    assert result.points.shape == result.weights.shape == result.frontier.shape == (3,)
    assert result.subset_winners.shape == (4,)


def test_result_arrays_are_read_only() -> None:
    result = score([[0.5]])
    with pytest.raises(ValueError):
        result.weights[0] = 0.5


def test_full_subnet_scores_well_under_a_second() -> None:
    rng = np.random.default_rng(0)
    success = rng.integers(0, N + 1, size=(256, 8)) / N
    start = time.perf_counter()
    score(success, priority=rng.integers(0, 1000, size=256))
    assert time.perf_counter() - start < 1.0
