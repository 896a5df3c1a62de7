"""How many channels each group loses: the step that decides quality.

One greedy engine serves every strategy. It repeatedly removes one `round_to`-sized step from the group
where that step is cheapest, until the parameter (or MAC) target is met; the strategy only says what
"cheap" means:
- `uniform`: the group with the smallest removed fraction (water-filling: the same ratio everywhere);
- `sensitivity`: the least measured damage per parameter saved (see `sensitivity.py`);
- `global`: one ranking of all channels across layers by the criterion's scores (normalised per group
  unless they are comparable as they are, like BN scales), cheapest first, with a per-group cap.
Costs are predicted by `CostModel`, so the search takes well under a second even on full-size networks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from .cost import Cost, CostModel
from .errors import UserError
from .graph import ChannelGroup
from .sensitivity import DamageCurve

TOLERANCE = 0.01  # the achieved ratio must land within target ± this


@dataclass(frozen=True)
class Allocation:
    """Units to remove per group, and what that is predicted to cost."""

    removed: dict[str, int]
    predicted: Cost
    ratio: float
    strategy: str


class AllocationStrategy(ABC):
    name: ClassVar[str]
    max_fraction: float | None = None  # the most of a group's units it may remove (None: all but round_to)

    @abstractmethod
    def step_cost(self, group: ChannelGroup, now: int, after: int, saved: int) -> float:
        """Cost of going from `now` to `after` removed units in `group`, saving `saved` params/MACs."""

    def describe(self) -> str:
        return self.name


class UniformAllocation(AllocationStrategy):
    """The same removed fraction in every group, solved to the target."""

    name = "uniform"

    def step_cost(self, group: ChannelGroup, now: int, after: int, saved: int) -> float:
        return after / len(group.units)


class SensitivityAllocation(AllocationStrategy):
    """Least measured damage per unit of cost saved; damage curves come from `measure_sensitivity`."""

    name = "sensitivity"

    def __init__(self, curves: Mapping[str, DamageCurve], source: str):
        self.curves = dict(curves)
        self.source = source

    def step_cost(self, group: ChannelGroup, now: int, after: int, saved: int) -> float:
        curve = self.curves[group.name]
        return (curve.at(after) - curve.at(now)) / max(saved, 1)

    def describe(self) -> str:
        return f"sensitivity ({self.source})"


class GlobalAllocation(AllocationStrategy):
    """One ranking across layers: the next step is the group whose next-weakest units score lowest.

    Scores are divided by their group's mean unless the criterion says raw scores compare across layers
    (BN |γ| after sparsity training: network slimming's single global threshold). Each group keeps at
    least 1 - `max_fraction` of its units, so no layer collapses to a sliver.
    """

    name = "global"

    def __init__(self, unit_scores: Mapping[str, list[float]], max_fraction: float, criterion: str):
        self.sorted_scores = {name: sorted(scores) for name, scores in unit_scores.items()}
        self.max_fraction = max_fraction
        self.criterion = criterion

    @classmethod
    def from_scores(cls, graph, criterion, max_fraction: float) -> GlobalAllocation:
        unit_scores = {}
        for group in graph.groups:
            scores = criterion.scores(graph, group.name)
            per_unit = [float(scores[list(u)].mean()) for u in group.units]
            if not criterion.comparable_across_layers:
                mean = sum(per_unit) / len(per_unit)
                per_unit = [x / mean if mean > 0 else 0.0 for x in per_unit]
            unit_scores[group.name] = per_unit
        return cls(unit_scores, max_fraction, criterion.name)

    def step_cost(self, group: ChannelGroup, now: int, after: int, saved: int) -> float:
        return max(self.sorted_scores[group.name][now:after])  # the threshold this step moves up to

    def describe(self) -> str:
        return f"global ({self.criterion} scores, at most {self.max_fraction:.0%} of a group)"


ALLOCATIONS = ("uniform", "sensitivity", "global")


def allowed_removals(group: ChannelGroup, round_to: int, max_fraction: float | None = None) -> list[int]:
    """Removed-unit counts that leave a multiple of `round_to` channels, never fewer than `round_to`."""
    size = group.unit_size
    counts = []
    for r in range(1, len(group.units)):
        keep = group.channels - r * size
        if keep < round_to or (max_fraction is not None and r > max_fraction * len(group.units)):
            break
        if keep % round_to == 0:
            counts.append(r)
    return counts


def allocate(
    groups: list[ChannelGroup],
    cost_model: CostModel,
    strategy: AllocationStrategy,
    target: float,
    by: str = "params",
    round_to: int = 8,
    max_fraction: float | None = None,
) -> Allocation:
    """Greedy removal until the predicted `by` ratio reaches `target` (within ±TOLERANCE)."""
    base = cost_model.baseline.get(by)
    goal = target * base
    floor = (target - TOLERANCE) * base
    steps = {g.name: allowed_removals(g, round_to, max_fraction) for g in groups}
    by_name = {g.name: g for g in groups}
    removed: dict[str, int] = {g.name: 0 for g in groups}
    current = base
    while current > goal:
        best: tuple[float, str, int, int] | None = None
        closest: tuple[float, str, int, int] | None = None
        for name, options in steps.items():
            now = removed[name]
            after = next((r for r in options if r > now), None)
            if after is None:
                continue
            saved = cost_model.saving(removed, name, after - now).get(by)
            if saved <= 0:
                continue
            landing = current - saved
            gap = abs(landing - goal)
            if closest is None or gap < closest[0]:
                closest = (gap, name, after, saved)
            if landing < floor:
                continue  # would overshoot the tolerance band; a smaller step elsewhere may fit
            cost = strategy.step_cost(by_name[name], now, after, saved)
            if best is None or cost < best[0]:
                best = (cost, name, after, saved)
        choice = best or closest
        if choice is None:
            break
        _, name, after, saved = choice
        removed[name] = after
        current -= saved
        if best is None:  # only overshooting steps were left: took the closest one, stop here
            break
    predicted = cost_model.predict(removed)
    ratio = predicted.get(by) / base
    if abs(ratio - target) > TOLERANCE:
        raise UserError(
            f"cannot reach {by} target {target:.4f} with --round-to {round_to}: the closest reachable "
            f"is {ratio:.4f}; choose a target nearer 1, or a smaller --round-to"
        )
    return Allocation({k: v for k, v in removed.items() if v}, predicted, ratio, strategy.describe())
