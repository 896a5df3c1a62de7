"""When channels are removed: what a schedule is, and what it is handed.

A schedule receives the allocation (how many units each group loses) and a criterion (which ones), and
edits the model in place through the graph, recording every step in the plan. Schedules are registered
by name, one module each, so that `--schedule NAME` is a lookup and later methods add a file, not a branch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch.nn as nn

from ...progress import SILENT, Progress
from ...registry import Registry
from ...train.loop import Trainer
from ..cost import CostModel
from ..criteria import CalibrationData, Criterion
from ..graph import PruningGraph
from ..plan import ChannelPlan

SCHEDULES: Registry[Schedule] = Registry("schedule", "mobileprune.prune.schedules")


@dataclass
class ScheduleContext:
    model: nn.Module
    graph: PruningGraph
    removals: dict[str, int]  # units to remove per group (filled by the schedule when it decides them)
    criterion: Criterion
    plan: ChannelPlan
    calibration: CalibrationData | None = None  # for criteria (and schedules) that measure with data
    trainer: Trainer | None = None
    steps_per_layer: int = 50
    quick_top1: Callable[[nn.Module], float] | None = None  # top-1 on a few validation batches
    progress: Progress = SILENT
    # what the target is, for schedules that decide the amounts themselves (greedy)
    cost: CostModel | None = None
    target: float = 1.0
    round_to: int = 8
    # checkpoints (prune/checkpoint.py): what the schedule saved before a kill, and where it saves progress
    resume: Any = None
    save_partial: Callable[[Any], None] | None = None

    def prune_group(self, name: str, units: int | None = None) -> list[int]:
        """Remove `units` (default: the allocated number) of `name`, chosen by the criterion now."""
        if self.criterion.needs_data:  # the model changed since the last prune: look again
            self.criterion.prepare(self.model, self.calibration)
        group = self.graph.group(name)  # each group is pruned once, so its numbering is still the original
        scores = self.criterion.scores(self.graph, name)
        channels = group.channels_to_remove(scores, self.removals[name] if units is None else units)
        self.prune_channels(name, channels)
        return channels

    def prune_channels(self, name: str, channels: list[int]) -> None:
        self.graph.prune(name, channels)
        self.plan.add(name, channels)


class Schedule(ABC):
    name: ClassVar[str]
    description: ClassVar[str] = ""
    decides_amounts: ClassVar[bool] = False  # True: ignores the allocation and fills ctx.removals itself
    retrains_while_pruning: ClassVar[bool] = False  # True: its pruning time is mostly retraining (reported so)

    @abstractmethod
    def run(self, ctx: ScheduleContext) -> list[dict]:
        """Prune `ctx.model` as allocated; returns per-step log entries for the report."""
