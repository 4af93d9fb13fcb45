"""Subset winners and points (DESIGN §8, steps 2 and 3).

An env subset S is a bitmask: bit e set means env column e is in S. Walking miners by (priority, uid),
candidate c wins S iff

* c beats every earlier miner o on all of S: `s[c, e] > T[o, e]` for every e in S;
* no later miner o beats c on all of S: not (`s[o, e] > T[c, e]` for every e in S);
* c has some success on every env of S.

At most one miner can satisfy this (of two, the later one would beat the earlier on all of S, which
the earlier one's second condition forbids), so "the first such c" is simply "the one, if any".

How it is vectorized, with miners in rank order and `beats[i, j]` the bitmask of envs on which
ranked miner i beats ranked miner j's threshold (one M x M comparison per env, never a Python loop
over pairs):

* condition 1 is `S ⊆ AND_{j<i} beats[i, j]`, one mask per candidate;
* condition 3 is `S ∩ zero[i] = ∅`, one mask per candidate;
* condition 2 fails iff S is a subset of some `beats[j, i]`, j > i. We mark each such mask in an
  M x 2^E table and close it downwards (a superset-OR over the E bits), giving for every candidate
  and every subset "some later miner beats it on all of S".

Cost is O(M²·E + M·2^E·E) time and O(M² + M·2^E) memory.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def rank_order(uids: NDArray[np.int64], priority: NDArray[np.float64]) -> NDArray[np.int64]:
    """Row indices from earliest to latest: by priority, ties broken by the lower uid."""
    return np.lexsort((uids, priority)).astype(np.int64)


def subset_winners(
    success: NDArray[np.float64], thresholds: NDArray[np.float64], order: NDArray[np.int64]
) -> NDArray[np.int64]:
    """Winner of every env subset: `winners[S]` is a row index, or -1 when nobody wins S.

    `winners[0]` (the empty subset) is always -1. `order` lists the rows from earliest to latest.
    """
    n_miners, n_envs = success.shape
    n_subsets = 1 << n_envs
    winners = np.full(n_subsets, -1, dtype=np.int64)
    if n_miners == 0:
        return winners
    all_envs = n_subsets - 1
    s = success[order]
    t = thresholds[order]

    beats = np.zeros((n_miners, n_miners), dtype=np.uint16)  # E <= 12 bits
    for e in range(n_envs):  # a loop over envs (<= 12), not over miner pairs
        beats |= (s[:, None, e] > t[None, :, e]) * np.uint16(1 << e)

    # earlier[i, j]: ranked miner j comes before ranked miner i.
    earlier = np.tri(n_miners, n_miners, -1, dtype=bool)
    beats_every_earlier = np.bitwise_and.reduce(np.where(earlier, beats, all_envs), axis=1)
    env_bits = np.int64(1) << np.arange(n_envs, dtype=np.int64)
    zero_envs = ((s == 0.0) * env_bits).sum(axis=1)
    may_win = beats_every_earlier.astype(np.int64) & ~zero_envs & all_envs

    # beaten_by_later[i, S]: some later miner beats ranked miner i on all of S. Row j, column i of
    # `beats` with j > i is such a miner's mask; entries with j <= i are sent to the empty subset,
    # which is never scored. One flat scatter of M² entries, no pair loop.
    beaten_by_later = np.zeros((n_miners, n_subsets), dtype=bool)
    flat = np.where(earlier, beats, 0).astype(np.intp)
    flat += np.arange(0, n_miners * n_subsets, n_subsets, dtype=np.intp)[None, :]
    beaten_by_later.reshape(-1)[flat.ravel()] = True
    for e in range(n_envs):
        halves = beaten_by_later.reshape(n_miners, n_subsets >> (e + 1), 2, 1 << e)
        halves[:, :, 0, :] |= halves[:, :, 1, :]

    subsets = np.arange(n_subsets, dtype=np.int64)
    wins = ((subsets[None, :] & ~may_win[:, None]) == 0) & ~beaten_by_later
    wins[:, 0] = False
    first = wins.argmax(axis=0)
    won = wins[first, subsets]
    winners[won] = order[first[won]]
    return winners


def subset_sizes(n_envs: int) -> NDArray[np.int64]:
    """|S| for every subset bitmask 0 .. 2^E - 1."""
    subsets = np.arange(1 << n_envs, dtype=np.int64)
    return ((subsets[:, None] >> np.arange(n_envs)) & 1).sum(axis=1)


def points_from_winners(winners: NDArray[np.int64], n_miners: int, n_envs: int) -> NDArray[np.int64]:
    """`P[m] = Σ |S|` over the subsets S that m won."""
    won = winners >= 0
    points = np.zeros(n_miners, dtype=np.int64)
    np.add.at(points, winners[won], subset_sizes(n_envs)[won])
    return points
