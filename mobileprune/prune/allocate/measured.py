"""The measured strategy behind the greedy schedule (ThiNet-like, as the background reports did it).

Each round it tries the next slice of every group (1/16 of its units; which channels inside the group,
the criterion says) on the *current* network, with the slice masked, and charges the loss increase on
the calibration images per unit of cost saved. It is not a registered `--allocation`: its measurements
only hold for the network as it is, so the greedy schedule prunes each chosen slice (and fine-tunes)
before the next round, through the engine's `apply_step`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..criteria import CalibrationData, Criterion
from ..graph import ChannelGroup, PruningGraph
from ..masking import consumers_of, masked
from ..suffix_forward import SuffixForward
from .engine import AllocationStrategy


@dataclass
class MeasuredAllocation(AllocationStrategy):
    model: nn.Module
    graph: PruningGraph
    criterion: Criterion
    calibration: CalibrationData
    slices: int = 16
    chosen: dict[str, list[int]] = field(default_factory=dict)  # channels (current numbering) per tried step
    increase: dict[str, float] = field(default_factory=dict)  # measured loss increase per tried step
    _base_loss: float = 0.0
    _suffix: SuffixForward | None = None

    name = "measured"

    def begin_round(self, removed: Mapping[str, int]) -> None:
        if self.criterion.needs_data:  # the network changed since the last round: look again
            self.criterion.prepare(self.model, self.calibration)
        self._base_loss = calibration_loss(self.model, self.calibration)
        self._suffix = SuffixForward(self.model, self.calibration.batches)  # the network as it is this round
        self.chosen.clear()
        self.increase.clear()

    def min_step(self, group: ChannelGroup) -> int:
        return max(1, len(group.units) // self.slices)

    def step_cost(self, group: ChannelGroup, now: int, after: int, saved: float) -> float:
        current = self.graph.current_group(group.name)
        channels = current.channels_to_remove(self.criterion.scores(self.graph, group.name), after - now)
        suffix = self._suffix or SuffixForward(self.model, self.calibration.batches)
        start = suffix.start(consumers_of(current))
        with torch.no_grad(), masked(self.model, current, channels):
            outputs = suffix.outputs(start)
        increase = _mean_loss(outputs, self.calibration.targets) - self._base_loss
        self.chosen[group.name], self.increase[group.name] = channels, increase
        return increase / saved

    def describe(self) -> str:
        return "greedy (measured at every step)"


@torch.no_grad()
def calibration_loss(model: nn.Module, data: CalibrationData) -> float:
    """Cross-entropy against the unpruned model's predictions, averaged over the calibration batches."""
    model.eval()
    return _mean_loss([model(x) for x in data.batches], data.targets)


def _mean_loss(outputs: list[torch.Tensor], targets: list[torch.Tensor]) -> float:
    losses = [float(F.cross_entropy(y, t)) for y, t in zip(outputs, targets, strict=True)]
    return sum(losses) / len(losses)
