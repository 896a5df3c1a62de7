"""What a target counts (`--by`): a `CostModel` predicts it for any per-group channel removal.

The allocation engine tries thousands of removals, so a cost model predicts instead of pruning copies.
One module per cost, each registered in `COST_MODELS` under its `--by` name: `params` and `macs`
(`analytic.py`, exact counts from the layer shapes). `count_cost` counts both on a real model, which
the pipeline uses to verify what the analytic model predicted.
"""

from .analytic import Cost, LayerCosts, count_cost
from .base import COST_MODELS, CostModel

__all__ = ["COST_MODELS", "Cost", "CostModel", "LayerCosts", "count_cost"]
