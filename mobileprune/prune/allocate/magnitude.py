"""`magnitude`: the data-free allocation; a group pays for the share of its weight magnitude it loses.

Without images there is nothing to measure damage on, and measuring it on random noise misleads: on
random-weight LCNet and MobileNetV3 it removed the cheap early layers until 0.17 and 0.27 of the MACs
were left for a 0.84 parameter target. Here the damage of removing a group's k weakest units is the share
of the group's criterion scores (L1 norms by default) they hold, charged per unit of cost saved, so a
layer of equally strong filters shrinks in proportion and a layer of weak ones gives them up first. No
forward pass is needed. Measurements: benchmarks/results/data_free_allocation.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...registry import option
from ..graph import ChannelGroup
from .engine import ALLOCATIONS, AllocationInputs, AllocationStrategy


@ALLOCATIONS.register
@dataclass
class MagnitudeAllocation(AllocationStrategy):
    name = "magnitude"
    description = "data-free: the share of a group's weight magnitude removed, per unit of cost saved"
    max_fraction: float = option(0.75, "the most of a group's channels it may remove")
    cumulative: dict[str, list[float]] = field(init=False, default_factory=dict)
    criterion: str = field(init=False, default="")

    def prepare(self, inputs: AllocationInputs) -> None:
        self.criterion = inputs.criterion.name
        for group in inputs.graph.groups:
            scores = inputs.criterion.scores(inputs.graph, group.name)
            per_unit = sorted(float(scores[list(u)].mean()) for u in group.units)
            total = sum(per_unit) or 1.0
            running = [0.0]
            for value in per_unit:
                running.append(running[-1] + value / total)
            self.cumulative[group.name] = running

    def step_cost(self, group: ChannelGroup, now: int, after: int, saved: float) -> float:
        share = self.cumulative[group.name]
        return (share[after] - share[now]) / saved  # the engine offers only steps that save something

    def describe(self) -> str:
        cap = f"at most {self.max_fraction:.0%} of a group"
        return f"magnitude (data-free: share of {self.criterion} scores removed, {cap})"
