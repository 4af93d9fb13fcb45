"""Bad inputs stop the cycle with a ValueError that names what to fix."""

from __future__ import annotations

import numpy as np
import pytest

from kinitro_dagster.scoring import pareto_frontier, score_cycle

GOOD = {
    "success": np.array([[0.5, 0.2], [0.1, 0.9]]),
    "uids": np.array([3, 8]),
    "priority": np.array([10, 20]),
    "live": np.array([True, True]),
    "n_episodes": 50,
}


def call(**changes):
    args = {**GOOD, **changes}
    keywords = {k: args.pop(k) for k in ("temperature", "z", "min_gap", "max_gap") if k in args}
    return score_cycle(
        args["success"], args["uids"], args["priority"], args["live"], args["n_episodes"], **keywords
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"success": np.array([0.5, 0.2])}, r"success must be 2-D \(miners x envs\), got shape \(2,\)"),
        ({"success": np.zeros((3, 2))}, r"success has 3 rows but uids has 2"),
        ({"success": np.zeros((2, 0))}, r"success has 0 env columns"),
        ({"success": np.zeros((2, 13))}, r"success has 13 env columns; the rule scores 1 to 12 envs"),
        (
            {"success": np.array([[0.5, np.nan], [0.1, 0.9]])},
            r"success is NaN for uid 3 \(row 0\) on env column 1",
        ),
        (
            {"success": np.array([[0.5, 0.2], [0.1, 1.5]])},
            r"success rate 1.5 for uid 8 \(row 1\) on env column 1 is outside \[0, 1\]",
        ),
        (
            {"success": np.array([[-0.1, 0.2], [0.1, 0.9]])},
            r"success rate -0.1 for uid 3 .* outside \[0, 1\]",
        ),
        ({"success": [["a", "b"], ["c", "d"]]}, r"success must be a numeric"),
        ({"uids": np.array([3, 3])}, r"duplicate uids: 3"),
        ({"uids": np.array([3.0, 8.0])}, r"uids must be integers"),
        ({"uids": np.array([3, 70000])}, r"uid 70000 is outside the chain's range 0..65535"),
        ({"uids": np.array([[3, 8]])}, r"uids must be 1-D"),
        ({"priority": np.array([10])}, r"priority must have shape \(2,\) to match uids"),
        ({"priority": np.array([10, np.nan])}, r"priority is nan for row 1; it must be finite"),
        ({"live": np.array([True])}, r"live must have shape \(2,\)"),
        ({"live": np.array([0.5, 1.0])}, r"live must be booleans"),
        ({"n_episodes": 0}, r"n_episodes must be >= 1"),
        ({"n_episodes": 2.5}, r"n_episodes must be an integer"),
        ({"n_episodes": True}, r"n_episodes must be an integer"),
        ({"temperature": 0.0}, r"temperature must be > 0"),
        ({"temperature": float("nan")}, r"temperature must be a finite number"),
        ({"z": -1.0}, r"z must be >= 0"),
        ({"min_gap": 0.2, "max_gap": 0.1}, r"min_gap \(0.2\) must not exceed max_gap \(0.1\)"),
    ],
)
def test_bad_input_is_rejected_with_a_message_naming_the_problem(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(**changes)


def test_plain_lists_and_integer_live_flags_are_accepted() -> None:
    result = score_cycle([[0.5, 0.2], [0.1, 0.9]], [3, 8], [10, 20], [1, 0], 50)
    assert result.points.sum() == 4


def test_pareto_frontier_checks_its_inputs_too() -> None:
    with pytest.raises(ValueError, match=r"n_episodes must be >= 1"):
        pareto_frontier([[0.5]], 0)
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        pareto_frontier([[1.5]], 10)
