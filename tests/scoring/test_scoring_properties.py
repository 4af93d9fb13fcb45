"""Properties of the scoring rule, checked on many small random cycles (hypothesis).

Success rates are drawn as k / n, the only values a real cycle of n episodes produces; priorities come
from a tiny range so ties (and the uid tie-break) are common.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scoring_reference import reference_points, reference_thresholds, reference_winners

from kinitro_dagster.scoring import CycleScores, score_cycle


@dataclass(frozen=True)
class Cycle:
    successes: np.ndarray  # (M, E) episode counts k, success = k / n
    uids: np.ndarray
    priority: np.ndarray
    live: np.ndarray
    n: int

    @property
    def success(self) -> np.ndarray:
        return self.successes / self.n

    def score(self, **kwargs) -> CycleScores:
        return score_cycle(self.success, self.uids, self.priority, self.live, self.n, **kwargs)


@st.composite
def cycles(draw: st.DrawFn, min_miners: int = 0, max_miners: int = 6, max_envs: int = 4) -> Cycle:
    n = draw(st.integers(1, 30))
    m = draw(st.integers(min_miners, max_miners))
    e = draw(st.integers(1, max_envs))
    counts = draw(st.lists(st.lists(st.integers(0, n), min_size=e, max_size=e), min_size=m, max_size=m))
    uids = draw(st.lists(st.integers(0, 255), min_size=m, max_size=m, unique=True))
    priority = draw(st.lists(st.integers(0, 3), min_size=m, max_size=m))
    live = draw(st.lists(st.booleans(), min_size=m, max_size=m))
    return Cycle(
        np.array(counts, dtype=np.int64).reshape(m, e),
        np.array(uids, dtype=np.int64),
        np.array(priority, dtype=np.int64),
        np.array(live, dtype=bool),
        n,
    )


@settings(max_examples=400, deadline=None)
@given(cycles())
def test_vectorized_rule_matches_literal_transcription(cycle: Cycle) -> None:
    result = cycle.score()
    success = cycle.success.tolist()
    np.testing.assert_array_equal(
        result.thresholds, np.array(reference_thresholds(success, cycle.n)).reshape(result.thresholds.shape)
    )
    winners = reference_winners(success, cycle.uids.tolist(), cycle.priority.tolist(), cycle.n)
    expected = np.full(result.subset_winners.shape, -1)
    for subset, row in winners.items():
        expected[subset] = row
    np.testing.assert_array_equal(result.subset_winners, expected)
    assert result.points.tolist() == reference_points(winners, len(success))


@settings(max_examples=300, deadline=None)
@given(cycles(), st.randoms(use_true_random=False))
def test_permuting_the_miners_permutes_the_result(cycle: Cycle, random) -> None:
    m = cycle.uids.shape[0]
    perm = np.array(random.sample(range(m), m), dtype=np.int64)
    before = cycle.score()
    after = score_cycle(
        cycle.success[perm], cycle.uids[perm], cycle.priority[perm], cycle.live[perm], cycle.n
    )

    np.testing.assert_array_equal(after.uids, before.uids[perm])
    np.testing.assert_array_equal(after.points, before.points[perm])
    np.testing.assert_array_equal(after.thresholds, before.thresholds[perm])
    np.testing.assert_array_equal(after.frontier, before.frontier[perm])
    # Summation order may differ, so weights agree to rounding, not bit for bit.
    np.testing.assert_allclose(after.weights, before.weights[perm], rtol=1e-12, atol=1e-15)
    assert after.has_weights == before.has_weights
    # Winners are row indices: map the new rows back to the old ones.
    mapped = after.subset_winners.copy()
    mapped[mapped >= 0] = perm[mapped[mapped >= 0]]
    np.testing.assert_array_equal(mapped, before.subset_winners)


@settings(max_examples=400, deadline=None)
@given(cycles(min_miners=1), st.data())
def test_raising_own_success_on_one_env_never_lowers_own_points(cycle: Cycle, data: st.DataObject) -> None:
    # Holds for the rule as written: every condition a winner meets is monotone in its own success
    # (it beats earlier thresholds more easily; its own threshold T = min(s + gap, 1) is non-decreasing
    # in s, so later miners beat it less easily; and a raise can only clear the 0 % exclusion). A winner
    # of S is the unique miner meeting them, so it keeps every subset it had.
    m, e = cycle.successes.shape
    row = data.draw(st.integers(0, m - 1), label="row")
    env = data.draw(st.integers(0, e - 1), label="env")
    assume(cycle.successes[row, env] < cycle.n)
    raised = cycle.successes.copy()
    raised[row, env] = data.draw(st.integers(cycle.successes[row, env] + 1, cycle.n), label="raised to")

    before = cycle.score()
    after = score_cycle(raised / cycle.n, cycle.uids, cycle.priority, cycle.live, cycle.n)
    assert after.points[row] >= before.points[row]
    won_before = before.subset_winners == row
    assert (after.subset_winners[won_before] == row).all()


@settings(max_examples=300, deadline=None)
@given(cycles(), st.floats(0.05, 20.0))
def test_weights_form_a_distribution_or_are_absent(cycle: Cycle, temperature: float) -> None:
    result = cycle.score(temperature=temperature)
    assert result.weights.shape == cycle.uids.shape
    assert np.isfinite(result.weights).all()
    if result.has_weights:
        assert (result.weights >= 0).all()
        assert abs(result.weights.sum() - 1.0) <= 1e-9
        assert (result.weights[result.points == 0] == 0).all() or not (result.points > 0).any()
    else:
        assert (result.weights == 0).all()
        assert not (result.points > 0).any() and not cycle.live.any()


@settings(max_examples=200, deadline=None)
@given(cycles(max_miners=5, max_envs=3))
def test_every_subset_has_at_most_one_winner_and_points_add_up(cycle: Cycle) -> None:
    result = cycle.score()
    e = cycle.successes.shape[1]
    sizes = np.array([bin(s).count("1") for s in range(1 << e)])
    won = result.subset_winners >= 0
    assert result.points.sum() == sizes[won].sum() <= e * 2 ** (e - 1)


@given(st.integers(1, 1000), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_threshold_never_decreases_as_success_rises(n: int, a: float, b: float) -> None:
    low, high = min(a, b), max(a, b)
    assume(high - low > 1e-9)  # below that the comparison is about float rounding, not the rule
    result = score_cycle([[low], [high]], [0, 1], [0, 1], [True, True], n)
    assert result.thresholds[1, 0] >= result.thresholds[0, 0]


@pytest.mark.parametrize(("m", "e", "n"), [(10, 7, 20), (4, 12, 10), (40, 3, 5)])
def test_vectorized_rule_matches_literal_transcription_on_larger_cycles(m: int, e: int, n: int) -> None:
    rng = np.random.default_rng(m * 100 + e)
    success = rng.integers(0, n + 1, size=(m, e)) / n
    uids = rng.permutation(1000)[:m]
    priority = rng.integers(0, 4, size=m)
    result = score_cycle(success, uids, priority, np.ones(m, dtype=bool), n)
    winners = reference_winners(success.tolist(), uids.tolist(), priority.tolist(), n)
    expected = np.full(1 << e, -1)
    for subset, row in winners.items():
        expected[subset] = row
    np.testing.assert_array_equal(result.subset_winners, expected)
    assert result.points.tolist() == reference_points(winners, m)
