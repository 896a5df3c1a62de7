"""When channels are removed: all at once, or one group at a time with retraining in between.

A schedule receives the allocation (how many units each group loses) and a criterion (which ones), and
edits the model in place through the graph, recording every step in the plan. Schedules are registered
by name so that `--schedule NAME` is a lookup and later methods add a class, not a branch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch.nn as nn

from .criteria import CalibrationData, Criterion
from .graph import PruningGraph
from .plan import ChannelPlan
from .progress import SILENT, Progress
from .registry import Registry
from .training import Accuracy, Trainer, evaluate


@dataclass
class ScheduleContext:
    model: nn.Module
    graph: PruningGraph
    removals: dict[str, int]  # units to remove per group
    criterion: Criterion
    plan: ChannelPlan
    trainer: Trainer | None = None
    calibration: CalibrationData | None = None  # for criteria that rank with data
    val_loader: object | None = None
    steps_per_layer: int = 50
    eval_batches: int = 4
    device: str = "cpu"
    progress: Progress = SILENT

    def prune_group(self, name: str) -> list[int]:
        """Remove the allocated units of `name`, chosen by the criterion on the current weights."""
        group = self.graph.group(name)
        if self.criterion.needs_data:  # the model changed since the last prune: look again
            self.criterion.prepare(self.model, self.calibration)
        scores = self.criterion.scores(self.graph, name)
        channels = group.channels_to_remove(scores, self.removals[name])
        self.graph.prune(name, channels)
        self.plan.add(name, channels)
        return channels


SCHEDULES: Registry[Schedule] = Registry("schedule")


def get_schedule(name: str) -> Schedule:
    return SCHEDULES.create(name)


class Schedule(ABC):
    name: ClassVar[str]

    @abstractmethod
    def run(self, ctx: ScheduleContext) -> list[dict]:
        """Prune `ctx.model` as allocated; returns per-step log entries for the report."""


@SCHEDULES.register
class OneShot(Schedule):
    """Every group pruned at once, in network order; retraining (if any) happens afterwards."""

    name = "oneshot"

    def run(self, ctx: ScheduleContext) -> list[dict]:
        names = [g.name for g in ctx.graph.groups if ctx.removals.get(g.name)]
        with ctx.progress.task("pruning", len(names)) as bar:
            for name in names:
                ctx.prune_group(name)
                bar.advance()
        return [{"group": n, "channels_after": ctx.graph.channels(n)} for n in names]


@SCHEDULES.register
class LayerWise(Schedule):
    """Prune one group, retrain briefly, evaluate, move to the next (input to output)."""

    name = "layerwise"

    def run(self, ctx: ScheduleContext) -> list[dict]:
        names = [g.name for g in ctx.graph.groups if ctx.removals.get(g.name)]
        if ctx.trainer is None:  # nothing to retrain with: layer order makes no difference
            return OneShot().run(ctx)
        log: list[dict] = []
        total = len(names) * ctx.steps_per_layer
        with ctx.progress.task("prune + retrain, layer by layer", total) as bar:
            for name in names:
                ctx.prune_group(name)

                def tick(loss: float, name: str = name) -> None:
                    bar.advance(1, f"{name} loss {loss:.3f}")

                loss = ctx.trainer.train(ctx.model, ctx.steps_per_layer, tick=tick)
                entry = {"group": name, "channels_after": ctx.graph.channels(name), "loss": round(loss, 4)}
                if ctx.val_loader is not None and ctx.eval_batches:
                    acc: Accuracy = evaluate(ctx.model, ctx.val_loader, ctx.device, ctx.eval_batches)
                    entry["quick_top1"] = round(acc.top1, 4)
                log.append(entry)
        return log
