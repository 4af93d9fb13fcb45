"""From points to weights (DESIGN §8, steps 4 and 5).

Only miners that won something are paid: a softmax over miners with points, zero for the rest (Kinitro
pays dead miners through a softmax over everyone; we don't). When nobody won anything the emission is
shared evenly by the miners that are up, and when nobody is up there is nothing honest to publish.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from kinitro_dagster.scoring.validation import MAX_UID

U16_MAX = 65535


def cycle_weights(
    points: NDArray[np.int64], live: NDArray[np.bool_], temperature: float
) -> tuple[NDArray[np.float64], bool]:
    """`(weights, has_weights)`; when `has_weights` is False the weights are all zero."""
    weights = np.zeros(points.shape[0], dtype=np.float64)
    scored = points > 0
    if scored.any():
        logits = points[scored] / temperature
        exp = np.exp(logits - logits.max())  # shifted so the largest term is exp(0) = 1
        weights[scored] = exp / exp.sum()
        return weights, True
    if live.any():
        weights[live] = 1.0 / np.count_nonzero(live)
        return weights, True
    return weights, False


def weights_to_u16(uids: ArrayLike, weights: ArrayLike) -> tuple[list[int], list[int]]:
    """The `(uids, u16 values)` a validator submits, by bittensor's own rule.

    Same result as `bittensor.utils.weight_utils.convert_weights_and_uids_for_emit`: weights are
    scaled so the largest becomes 65535, rounded half to even (Python's `round`), and uids whose value
    rounds to 0 are dropped; all-zero weights give `([], [])` (nothing to set). Kept separate from
    `score_cycle` because it is what the chain sees, and the chain's rule is not ours to change.
    """
    uid_array = np.asarray(uids)
    weight_array = np.asarray(weights, dtype=np.float64)
    if uid_array.ndim != 1 or weight_array.ndim != 1:
        raise ValueError(
            f"uids and weights must be 1-D, got shapes {uid_array.shape} and {weight_array.shape}"
        )
    if uid_array.shape != weight_array.shape:
        raise ValueError(
            "uids and weights must have the same length, "
            f"got {uid_array.shape[0]} and {weight_array.shape[0]}"
        )
    if uid_array.size == 0:
        return [], []
    if uid_array.dtype == np.bool_ or not np.issubdtype(uid_array.dtype, np.integer):
        raise ValueError(f"uids must be integers, got dtype {uid_array.dtype}")
    if not np.isfinite(weight_array).all():
        raise ValueError("weights contain NaN or infinity; nothing sensible can be set on chain")
    if (weight_array < 0).any():
        raise ValueError(f"weight {float(weight_array.min())} is negative; weights on chain are >= 0")
    if (uid_array < 0).any() or (uid_array > MAX_UID).any():
        raise ValueError(f"uids must be in 0..{MAX_UID}, got {uid_array.min()}..{uid_array.max()}")
    if weight_array.sum() == 0:
        return [], []
    values = np.rint(weight_array / weight_array.max() * U16_MAX).astype(np.int64)
    keep = values != 0
    return [int(u) for u in uid_array[keep]], [int(v) for v in values[keep]]
