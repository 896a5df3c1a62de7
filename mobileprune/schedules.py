"""When channels are removed: all at once, or one group at a time with retraining in between.

A schedule receives the allocation (how many units each group loses) and a criterion (which ones), and
edits the model in place through the graph, recording every step in the plan. Schedules are registered
by name so that `--schedule NAME` is a lookup and later methods add a class, not a branch.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from .allocation import TOLERANCE, allowed_removals
from .cost import CostModel
from .criteria import CalibrationData, Criterion
from .errors import UserError
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
    cost_model: CostModel | None = None  # for schedules that decide the amounts themselves (greedy)
    target: float = 1.0
    by: str = "params"
    round_to: int = 8
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
    decides_amounts: ClassVar[bool] = False  # True: ignores the allocation and fills ctx.removals itself

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


@SCHEDULES.register
class Greedy(Schedule):
    """Greedy layer-wise pruning (ThiNet-like, as the background reports did it), measured at every step.

    Each step tries the next slice of every group (1/16 of its channels, rounded to --round-to; which
    channels inside the group, the criterion says), measures the loss on fixed calibration images with
    that slice masked, removes the slice that raises the loss least per parameter (or MAC) saved, and
    fine-tunes --steps-per-layer batches when there is data. It decides the amounts itself and stops at
    the target. Cost: one masked forward pass over the calibration images per group per step.
    """

    name = "greedy"
    decides_amounts = True
    slices = 16

    def run(self, ctx: ScheduleContext) -> list[dict]:
        if ctx.cost_model is None or ctx.calibration is None:
            raise RuntimeError("greedy needs the cost model and calibration images in its context")
        from .sensitivity import masked

        groups = ctx.graph.groups
        if any(g.unit_size > 1 for g in groups):
            raise UserError("--schedule greedy does not handle tied channel groups (GhostNet) yet")
        base = ctx.cost_model.baseline.get(ctx.by)
        goal, floor = ctx.target * base, (ctx.target - TOLERANCE) * base
        options = {g.name: allowed_removals(g, ctx.round_to) for g in groups}
        removed = {g.name: 0 for g in groups}
        current = base
        log: list[dict] = []
        with ctx.progress.task(f"greedy steps ({len(groups)} trials each)", math.ceil(base - goal)) as bar:
            while current > goal:
                if ctx.criterion.needs_data:
                    ctx.criterion.prepare(ctx.model, ctx.calibration)
                before = _loss(ctx.model, ctx.calibration)
                best = None
                for g in groups:
                    now = removed[g.name]
                    step = max(1, len(g.units) // self.slices)
                    after = next((r for r in options[g.name] if r >= now + step), None)
                    if after is None:
                        continue
                    saved = ctx.cost_model.saving(removed, g.name, after - now).get(ctx.by)
                    if saved <= 0 or current - saved < floor:
                        continue
                    group = ctx.graph.current_group(g.name)
                    channels = group.channels_to_remove(ctx.criterion.scores(ctx.graph, g.name), after - now)
                    with torch.no_grad(), masked(ctx.model, group, channels):
                        increase = _loss(ctx.model, ctx.calibration) - before
                    if best is None or increase / saved < best[0]:
                        best = (increase / saved, g.name, after, saved, channels, increase)
                if best is None:
                    break  # nothing fits inside the tolerance band: allocate() would report it
                _, name, after, saved, channels, increase = best
                ctx.graph.prune(name, channels)
                ctx.plan.add(name, channels)
                removed[name] = after
                current -= saved
                entry = {"group": name, "removed_units": after, "loss_increase": round(increase, 5)}
                if ctx.trainer is not None and ctx.steps_per_layer:
                    entry["loss"] = round(ctx.trainer.train(ctx.model, ctx.steps_per_layer), 4)
                log.append(entry)
                bar.advance(saved, f"{len(log)} steps, last {name}")
        ctx.removals.clear()
        ctx.removals.update({k: v for k, v in removed.items() if v})
        return log


@torch.no_grad()
def _loss(model: nn.Module, data: CalibrationData) -> float:
    """Cross-entropy against the unpruned model's predictions, averaged over the calibration batches."""
    model.eval()
    losses = [float(F.cross_entropy(model(x), t)) for x, t in zip(data.batches, data.targets, strict=True)]
    return sum(losses) / len(losses)
