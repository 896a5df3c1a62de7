"""`global`: one ranking of all channels across layers by the criterion's scores, with a per-group cap."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...registry import option
from ..graph import ChannelGroup
from .engine import ALLOCATIONS, AllocationInputs, AllocationStrategy


@ALLOCATIONS.register
@dataclass
class GlobalAllocation(AllocationStrategy):
    """One ranking across layers: the next step is the group whose next-weakest units score lowest.

    Scores are divided by their group's mean unless the criterion says raw scores compare across layers
    (BN |γ| after sparsity training: network slimming's single global threshold). Each group keeps at
    least 1 - `max_fraction` of its units, so no layer collapses to a sliver.
    """

    name = "global"
    description = "one ranking of all channels by the criterion's scores"
    max_fraction: float = option(0.75, "the most of a group's channels it may remove (--max-layer-ratio)")
    sorted_scores: dict[str, list[float]] = field(init=False, default_factory=dict)
    criterion: str = field(init=False, default="")

    def __post_init__(self) -> None:
        if not 0 < self.max_fraction < 1:
            from ...errors import UserError

            raise UserError(f"--max-layer-ratio must be in (0, 1), not {self.max_fraction}")

    def prepare(self, inputs: AllocationInputs) -> None:
        graph, criterion = inputs.graph, inputs.criterion
        self.criterion = criterion.name
        for group in graph.groups:
            scores = criterion.scores(graph, group.name)
            per_unit = [float(scores[list(u)].mean()) for u in group.units]
            if not criterion.comparable_across_layers:
                mean = sum(per_unit) / len(per_unit)
                per_unit = [x / mean if mean > 0 else 0.0 for x in per_unit]
            self.sorted_scores[group.name] = sorted(per_unit)

    def step_cost(self, group: ChannelGroup, now: int, after: int, saved: float) -> float:
        return max(self.sorted_scores[group.name][now:after])  # the threshold this step moves up to

    def describe(self) -> str:
        return f"global ({self.criterion} scores, at most {self.max_fraction:.0%} of a group)"
