"""The plots analysts read beside a cycle's scores: PNG bytes from plain arrays (matplotlib, no display)."""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HISTORY_MINERS = 8  # lines per history panel: the miners with the most points now


def _figure(width: float, height: float) -> Figure:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and run containers
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def front_plot(env_ids: Sequence[str], uids: Sequence[int], success: np.ndarray, frontier: np.ndarray) -> bytes:
    """Success per env, a line per miner: the ε-Pareto front in colour (labelled), the rest in grey."""
    figure = _figure(max(4.0, 1.3 * len(env_ids) + 2), 3.6)
    axes = figure.subplots()
    x = np.arange(len(env_ids))
    for i in range(len(uids)):
        if not frontier[i]:
            axes.plot(x, success[i], color="0.7", linewidth=0.8, marker=".", alpha=0.6, zorder=1)
    for i, uid in enumerate(uids):
        if frontier[i]:
            axes.plot(x, success[i], linewidth=2, marker="o", label=f"uid {uid}", zorder=2)
    axes.set_xticks(x, [env.split("/")[-1] for env in env_ids], rotation=30, ha="right")
    axes.set_ylim(-0.05, 1.05)
    axes.set_ylabel("success rate")
    axes.set_title(f"ε-Pareto front: {int(frontier.sum())} of {len(uids)} miners (grey: dominated)")
    if frontier.any():
        axes.legend(fontsize="small", loc="best")
    return _png(figure)


def history_plot(history: Sequence[tuple[int, int, str, float]], uids: Sequence[int]) -> bytes:
    """Success per env over cycles (x: the cycle's block), a panel per env, a line per miner in `uids`."""
    series: dict[str, dict[int, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for block, uid, env_id, rate in history:
        if uid in uids:
            series[env_id][uid].append((block, rate))
    env_ids = sorted(series)
    columns = min(4, max(1, len(env_ids)))
    rows = -(-max(1, len(env_ids)) // columns)
    figure = _figure(3.2 * columns, 2.6 * rows + 0.4)
    grid = np.atleast_1d(figure.subplots(rows, columns, sharey=True, squeeze=False)).ravel()
    for axes, env_id in zip(grid, env_ids, strict=False):
        for uid in uids:
            points = series[env_id].get(uid)
            if points:
                blocks, rates = zip(*points, strict=True)
                axes.plot(blocks, rates, marker="o", markersize=3, label=f"uid {uid}")
        axes.set_title(env_id.split("/")[-1], fontsize="medium")
        axes.set_ylim(-0.05, 1.05)
        axes.set_xlabel("cycle block", fontsize="small")
    for axes in grid[len(env_ids):]:
        axes.set_visible(False)
    if env_ids:
        grid[0].set_ylabel("success rate")
        grid[0].legend(fontsize="x-small", loc="best")
    figure.suptitle(f"success per env over the last {len({b for b, *_ in history})} scored cycles")
    return _png(figure)
