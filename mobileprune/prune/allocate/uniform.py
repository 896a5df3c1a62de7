"""`uniform`: the same removed fraction in every group, solved to the target."""

from __future__ import annotations

from ..graph import ChannelGroup
from .engine import ALLOCATIONS, AllocationStrategy


@ALLOCATIONS.register
class UniformAllocation(AllocationStrategy):
    """Water-filling: the next step goes to the group with the smallest removed fraction."""

    name = "uniform"
    description = "the same ratio in every layer"

    def step_cost(self, group: ChannelGroup, now: int, after: int, saved: float) -> float:
        return after / len(group.units)
