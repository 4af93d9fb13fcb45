"""Per-miner, per-env thresholds (DESIGN §8, step 1).

A challenger must beat a miner's success rate by more than the noise of `n` episodes before it counts
as better: `p = clip(s, .01, .99)`, `gap = clip(z·sqrt(p(1-p)/n), min_gap, max_gap)`,
`T = min(s + gap, 1)`. The clip on `p` keeps a 0 % or 100 % miner from getting a zero-width interval;
the clip on `gap` keeps the margin meaningful for large `n` and beatable for small `n`.

`T` is non-decreasing in `s` (where `T < 1`, dT/ds = 1 + (1-2p)·gap / (2p(1-p)) > 1/(2p) > 0 because
`gap < 1 - s` there), which is why a miner raising its own success never hurts itself.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

# The rule's parameters as published (DESIGN §8); `score_cycle` defaults to them, and each signed
# weights row records the values it was scored with.
THRESHOLD_Z = 1.5
MIN_GAP = 0.02
MAX_GAP = 0.10


def threshold_gaps(
    success: NDArray[np.float64], n_episodes: int, z: float, min_gap: float, max_gap: float
) -> NDArray[np.float64]:
    """The margin a challenger must clear, per miner and env (shape of `success`)."""
    p = np.clip(success, 0.01, 0.99)
    return np.clip(z * np.sqrt(p * (1.0 - p) / n_episodes), min_gap, max_gap)


def thresholds_from_gaps(success: NDArray[np.float64], gaps: NDArray[np.float64]) -> NDArray[np.float64]:
    """`T = min(s + gap, 1)`: success rates strictly above `T[m, e]` beat miner m on env e."""
    return np.minimum(success + gaps, 1.0)
