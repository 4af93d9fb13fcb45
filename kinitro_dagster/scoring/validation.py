"""Input checks for a scoring cycle.

The scoring rule decides who gets paid, so a malformed input must stop the cycle with a message an
operator can act on, never be silently coerced. Every check names the argument, the offending row's
uid and env column where there is one, and the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from numpy.typing import ArrayLike, NDArray

# Every non-empty env subset is scored, so cost and memory grow as M x 2^E. 12 envs (4095 subsets)
# is what the rule is benchmarked for; raise this only with a new benchmark.
MAX_ENVS = 12

# Bittensor uids are u16 on chain; anything else cannot receive a weight.
MAX_UID = 65535


@dataclass(frozen=True, slots=True)
class CycleInputs:
    """Checked, canonical arrays for one cycle (rows aligned with the caller's rows)."""

    success: NDArray[np.float64]  # (M, E), every value in [0, 1]
    uids: NDArray[np.int64]  # (M,), unique, 0..65535
    priority: NDArray[np.float64]  # (M,), finite; lower = earlier commit
    live: NDArray[np.bool_]  # (M,)
    n_episodes: int


def check_rule_parameters(n_episodes: object, z: object, min_gap: object, max_gap: object) -> int:
    """Validate the threshold parameters; returns `n_episodes` as a plain int."""
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, Integral):
        raise ValueError(f"n_episodes must be an integer episode count, got {n_episodes!r}")
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1 (episodes per env in the cycle), got {n_episodes}")
    _check_real("z", z, minimum=0.0)
    _check_real("min_gap", min_gap, minimum=0.0)
    _check_real("max_gap", max_gap, minimum=0.0)
    if min_gap > max_gap:  # type: ignore[operator]
        raise ValueError(f"min_gap ({min_gap}) must not exceed max_gap ({max_gap})")
    return int(n_episodes)


def check_temperature(temperature: object) -> float:
    _check_real("temperature", temperature, minimum=0.0)
    if temperature == 0:
        raise ValueError("temperature must be > 0 (it divides the points before the softmax), got 0")
    return float(temperature)  # type: ignore[arg-type]


def check_success(success: ArrayLike, uids: NDArray[np.int64] | None = None) -> NDArray[np.float64]:
    """`success` as a float (M, E) array of rates in [0, 1]; `uids` only improves the messages."""
    try:
        array = np.array(success, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"success must be a numeric (miners x envs) array of rates: {error}") from None
    if array.ndim != 2:
        raise ValueError(f"success must be 2-D (miners x envs), got shape {array.shape}")
    n_envs = array.shape[1]
    if not 1 <= n_envs <= MAX_ENVS:
        raise ValueError(
            f"success has {n_envs} env columns; the rule scores 1 to {MAX_ENVS} envs "
            f"(every one of the 2^E - 1 env subsets is scored)"
        )
    bad = np.isnan(array)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"success is NaN for {_who(row, uids)} on env column {col} "
            f"({int(bad.sum())} NaN values); an episode that did not run counts as a failure, use 0"
        )
    bad = (array < 0.0) | (array > 1.0)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"success rate {float(array[row, col])} for {_who(row, uids)} on env column {col} is outside "
            f"[0, 1] ({int(bad.sum())} values out of range)"
        )
    return array


def check_cycle_inputs(
    success: ArrayLike,
    uids: ArrayLike,
    priority: ArrayLike,
    live: ArrayLike,
    n_episodes: object,
    *,
    z: object,
    min_gap: object,
    max_gap: object,
) -> CycleInputs:
    uid_array = check_uids(uids)
    n_miners = uid_array.shape[0]
    success_array = check_success(success, uid_array)
    if success_array.shape[0] != n_miners:
        raise ValueError(
            f"success has {success_array.shape[0]} rows but uids has {n_miners}; "
            "every argument needs one row per miner"
        )
    priority_array = _check_priority(priority, n_miners)
    live_array = _check_live(live, n_miners)
    n = check_rule_parameters(n_episodes, z, min_gap, max_gap)
    return CycleInputs(success_array, uid_array, priority_array, live_array, n)


def check_uids(uids: ArrayLike) -> NDArray[np.int64]:
    array = np.asarray(uids)
    if array.ndim != 1:
        raise ValueError(f"uids must be 1-D (one uid per miner), got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"uids must be integers, got dtype {array.dtype}")
    array = array.astype(np.int64)
    out_of_range = (array < 0) | (array > MAX_UID)
    if out_of_range.any():
        raise ValueError(f"uid {int(array[out_of_range][0])} is outside the chain's range 0..{MAX_UID}")
    values, counts = np.unique(array, return_counts=True)
    if (counts > 1).any():
        repeated = ", ".join(str(int(v)) for v in values[counts > 1][:10])
        raise ValueError(f"duplicate uids: {repeated}; each miner must appear in exactly one row")
    return array


def _check_priority(priority: ArrayLike, n_miners: int) -> NDArray[np.float64]:
    try:
        array = np.array(priority, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"priority must be numeric (first-seen block per miner): {error}") from None
    if array.shape != (n_miners,):
        raise ValueError(f"priority must have shape ({n_miners},) to match uids, got {array.shape}")
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(
            f"priority is {float(array[bad][0])} for row {int(np.argmax(bad))}; it must be finite"
        )
    return array


def _check_live(live: ArrayLike, n_miners: int) -> NDArray[np.bool_]:
    array = np.asarray(live)
    if array.shape != (n_miners,):
        raise ValueError(f"live must have shape ({n_miners},) to match uids, got {array.shape}")
    if array.dtype == np.bool_:
        return array.copy()
    if array.size and not (np.issubdtype(array.dtype, np.number) and np.isin(array, (0, 1)).all()):
        raise ValueError(f"live must be booleans (or 0/1), got dtype {array.dtype}")
    return array.astype(np.bool_)


def _check_real(name: str, value: object, *, minimum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _who(row: int, uids: NDArray[np.int64] | None) -> str:
    if uids is not None and row < uids.shape[0]:
        return f"uid {int(uids[row])} (row {row})"
    return f"row {row}"
