"""The scoring rule (DESIGN §8): who wins which env subsets, and who gets paid.

Pure numpy: arrays in, arrays out, no Dagster, no I/O.

* `score_cycle` — thresholds, subset winners, points, weights and the ε-Pareto front for one cycle.
* `weights_to_u16` — the u16 values a validator submits (bittensor's max-normalised conversion).
* `pareto_frontier` — the analysts' ε-Pareto front on its own.
"""

from kinitro_dagster.scoring.cycle import CycleScores, score_cycle
from kinitro_dagster.scoring.frontier import pareto_frontier
from kinitro_dagster.scoring.validation import MAX_ENVS
from kinitro_dagster.scoring.weights import U16_MAX, weights_to_u16

__all__ = ["MAX_ENVS", "U16_MAX", "CycleScores", "pareto_frontier", "score_cycle", "weights_to_u16"]
