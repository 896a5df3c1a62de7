"""The one greedy engine every allocation runs on: how many units each group loses.

It repeatedly removes one step (to the next channel count that is a multiple of `round_to`) from the
group where that step is cheapest, until the cost model's target is met; the strategy only says what
"cheap" means (see the strategy modules beside this one). Costs are predicted by a `CostModel`, so the
search takes well under a second on full-size networks. A strategy that measures the real network as
it goes (the greedy schedule) passes `apply_step`, which prunes each chosen step before the next round.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ...errors import UserError
from ...registry import Registry
from ..cost import CostModel
from ..graph import ChannelGroup

TOLERANCE = 0.01  # the achieved ratio must land within target ± this

ALLOCATIONS: Registry[AllocationStrategy] = Registry("allocation", "mobileprune.prune.allocate")


@dataclass(frozen=True)
class Allocation:
    """Units to remove per group, and what that is predicted to cost (in the cost model's metric)."""

    removed: dict[str, int]
    predicted: float
    ratio: float
    strategy: str


class AllocationStrategy(ABC):
    """What makes one step cheaper than another; `prepare` looks at the network first if it must."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    max_fraction: float | None = None  # the most of a group's units it may remove (None: all but round_to)

    def prepare(self, inputs: AllocationInputs) -> None:
        """Measure or score what the strategy needs, once, before the engine runs."""
        return None

    def begin_round(self, removed: Mapping[str, int]) -> None:
        """Called before every engine round with the units removed so far."""
        return None

    def min_step(self, group: ChannelGroup) -> int:
        """The fewest units one step removes from `group`."""
        return 1

    @abstractmethod
    def step_cost(self, group: ChannelGroup, now: int, after: int, saved: float) -> float:
        """Cost of going from `now` to `after` removed units in `group`, saving `saved` of the metric."""

    def describe(self) -> str:
        return self.name

    def predicted_damage(self, removed: Mapping[str, int]) -> float | None:
        """The damage this strategy's own model predicts for an allocation (None: it has no damage model)."""
        return None


@dataclass
class AllocationInputs:
    """What the pipeline hands a strategy's `prepare`: the network and how to look at it."""

    model: object  # nn.Module
    graph: object  # PruningGraph
    criterion: object  # Criterion
    batches: list  # calibration inputs (images, or noise without data)
    source: str  # what the batches are ("32 images from DIR"), for the report
    data_free: bool  # the batches are random noise standing in for images
    progress: object  # Progress
    resume: Any = None  # what `save_partial` last saved, when resuming a run killed inside this allocation
    save_partial: Callable[[Any], None] | None = None  # a long measurement saves its progress here
    # reconstruction's images without the calibration inputs, for layer-input statistics (empty: no reconstruction)
    statistics_images: list = field(default_factory=list)


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
    cost: CostModel,
    strategy: AllocationStrategy,
    target: float,
    round_to: int = 8,
    apply_step: Callable[[str, int, int], None] | None = None,
    tick: Callable[[float], None] | None = None,
) -> Allocation:
    """Greedy removal until the predicted ratio reaches `target` (within ±TOLERANCE).

    `apply_step(group, now, after)` is called for every chosen step (pruning it for real, say) before
    the next round; `tick(saved)` reports progress in the cost model's metric.
    """
    base = cost.baseline()
    goal = target * base
    floor = (target - TOLERANCE) * base
    steps = {g.name: allowed_removals(g, round_to, strategy.max_fraction) for g in groups}
    by_name = {g.name: g for g in groups}
    removed: dict[str, int] = {g.name: 0 for g in groups}
    current = base
    while current > goal:
        strategy.begin_round(removed)
        best: tuple[float, str, int, float] | None = None
        closest: tuple[float, str, int, float] | None = None
        for name, options in steps.items():
            now = removed[name]
            after = next((r for r in options if r >= now + strategy.min_step(by_name[name])), None)
            if after is None:
                continue
            saved = cost.saving(removed, name, after - now)
            if saved <= 0:
                continue
            landing = current - saved
            gap = abs(landing - goal)
            if closest is None or gap < closest[0]:
                closest = (gap, name, after, saved)
            if landing < floor:
                continue  # would overshoot the tolerance band; a smaller step elsewhere may fit
            step_cost = strategy.step_cost(by_name[name], now, after, saved)
            if best is None or step_cost < best[0]:
                best = (step_cost, name, after, saved)
        choice = best or closest
        if choice is None:
            break
        _, name, after, saved = choice
        if apply_step is not None:
            apply_step(name, removed[name], after)
        removed[name] = after
        current -= saved
        if tick is not None:
            tick(saved)
        if best is None:  # only overshooting steps were left: took the closest one, stop here
            break
    predicted = cost.predict(removed)
    ratio = predicted / base
    if abs(ratio - target) > TOLERANCE:
        raise UserError(
            f"cannot reach {cost.metric} target {target:.4f} with --round-to {round_to}: the closest reachable "
            f"is {ratio:.4f}; choose a target nearer 1, or a smaller --round-to"
        )
    return Allocation({k: v for k, v in removed.items() if v}, predicted, ratio, strategy.describe())
