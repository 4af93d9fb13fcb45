"""A slow, literal transcription of DESIGN §8 in plain Python, to check the vectorized rule against.

Loops over subsets, candidates and opponents exactly as the text reads; no numpy, no cleverness.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def reference_thresholds(
    success: Sequence[Sequence[float]], n: int, z: float = 1.5, min_gap: float = 0.02, max_gap: float = 0.10
) -> list[list[float]]:
    table = []
    for row in success:
        out = []
        for s in row:
            p = min(max(s, 0.01), 0.99)
            gap = min(max(z * math.sqrt(p * (1.0 - p) / n), min_gap), max_gap)
            out.append(min(s + gap, 1.0))
        table.append(out)
    return table


def reference_winners(
    success: Sequence[Sequence[float]],
    uids: Sequence[int],
    priority: Sequence[float],
    n: int,
    z: float = 1.5,
    min_gap: float = 0.02,
    max_gap: float = 0.10,
) -> dict[int, int]:
    """{subset bitmask: winning row} for every subset somebody wins."""
    n_miners = len(success)
    n_envs = len(success[0]) if n_miners else 0
    t = reference_thresholds(success, n, z, min_gap, max_gap)
    order = sorted(range(n_miners), key=lambda m: (priority[m], uids[m]))
    winners: dict[int, int] = {}
    for mask in range(1, 1 << n_envs):
        subset = [e for e in range(n_envs) if mask >> e & 1]
        for rank, c in enumerate(order):
            if any(success[c][e] == 0 for e in subset):
                continue
            ok = True
            for other_rank, o in enumerate(order):
                if o == c:
                    continue
                if other_rank < rank:  # c is later: it must beat o on all of S
                    if not all(success[c][e] > t[o][e] for e in subset):
                        ok = False
                elif all(success[o][e] > t[c][e] for e in subset):  # c is earlier: o must not beat c
                    ok = False
            if ok:
                winners[mask] = c
                break
    return winners


def reference_points(winners: dict[int, int], n_miners: int) -> list[int]:
    points = [0] * n_miners
    for mask, row in winners.items():
        points[row] += bin(mask).count("1")
    return points
