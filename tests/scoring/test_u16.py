"""The u16 conversion validators submit: bittensor's `convert_weights_and_uids_for_emit`."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kinitro_dagster.scoring import score_cycle, weights_to_u16


def bittensor_rule(uids: list[int], weights: list[float]) -> tuple[list[int], list[int]]:
    """The loop in bittensor/utils/weight_utils.py, restated in plain Python for comparison."""
    if sum(weights) == 0:
        return [], []
    top = float(max(weights))
    out_uids, out_vals = [], []
    for uid, weight in zip(uids, weights, strict=True):
        value = round(float(weight) / top * 65535)
        if value != 0:
            out_uids.append(uid)
            out_vals.append(value)
    return out_uids, out_vals


def test_largest_weight_becomes_65535_and_the_rest_scale_with_it() -> None:
    assert weights_to_u16([4, 9, 2], [0.5, 0.25, 0.25]) == ([4, 9, 2], [65535, 32768, 32768])


def test_rounding_is_half_to_even_like_python_round() -> None:
    # 0.5 / 1 · 65535 = 32767.5 exactly: Python's round gives the even neighbour, 32768.
    _, values = weights_to_u16([1, 2], [1.0, 0.5])
    assert values == [65535, round(32767.5)]


def test_zero_weights_and_weights_that_round_to_zero_are_dropped() -> None:
    assert weights_to_u16([1, 2, 3], [1.0, 0.0, 1e-6]) == ([1], [65535])


def test_all_zero_weights_set_nothing() -> None:
    assert weights_to_u16([1, 2], [0.0, 0.0]) == ([], [])
    assert weights_to_u16([], []) == ([], [])


def test_cycle_without_weights_sets_nothing() -> None:
    result = score_cycle([[0.0]], [5], [1], [False], 10)
    assert not result.has_weights
    assert weights_to_u16(result.uids, result.weights) == ([], [])


def test_returns_plain_python_ints() -> None:
    uids, values = weights_to_u16(np.array([7], dtype=np.int32), np.array([0.3], dtype=np.float32))
    assert type(uids[0]) is int and type(values[0]) is int


@pytest.mark.parametrize(
    ("uids", "weights", "message"),
    [
        ([1, 2], [0.5, -0.1], r"weight -0.1 is negative"),
        ([1, 2], [0.5], r"same length, got 2 and 1"),
        ([-1], [1.0], r"uids must be in 0..65535"),
        ([1], [float("nan")], r"NaN or infinity"),
        ([1.5], [1.0], r"uids must be integers"),
    ],
)
def test_invalid_weights_are_rejected(uids, weights, message) -> None:
    with pytest.raises(ValueError, match=message):
        weights_to_u16(uids, weights)


@given(st.lists(st.floats(0.0, 1.0, allow_subnormal=False), min_size=1, max_size=40))
def test_matches_bittensor_rule(weights: list[float]) -> None:
    uids = list(range(len(weights)))
    assert weights_to_u16(uids, weights) == bittensor_rule(uids, weights)
