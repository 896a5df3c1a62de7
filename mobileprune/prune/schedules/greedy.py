"""`greedy`: the measured allocation run step by step on the real network, fine-tuning between steps."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...errors import UserError
from ...registry import option
from ..allocate import allocate
from ..allocate.measured import MeasuredAllocation
from .base import SCHEDULES, Schedule, ScheduleContext


@SCHEDULES.register
@dataclass
class Greedy(Schedule):
    """Greedy layer-wise pruning (ThiNet-like, as the background reports did it), measured at every step.

    Each step tries the next slice of every group, measures the loss on fixed calibration images with
    that slice masked, removes the slice that raises the loss least per unit of cost saved, and fine-tunes
    --steps-per-layer batches when there is data (see `allocate/measured.py`). It decides the amounts
    itself and stops at the target. Cost: one masked forward pass over the calibration images per group
    per step.
    """

    name = "greedy"
    description = "measured step by step on the real network, fine-tuning between steps (ThiNet-like)"
    decides_amounts = True
    slices: int = option(16, "a step removes 1/slices of a group's channels")

    def run(self, ctx: ScheduleContext) -> list[dict]:
        if ctx.cost is None or ctx.calibration is None:
            raise RuntimeError("greedy needs the cost model and calibration images in its context")
        groups = ctx.graph.groups
        if any(g.unit_size > 1 for g in groups):
            raise UserError("--schedule greedy does not handle tied channel groups (GhostNet) yet")
        strategy = MeasuredAllocation(ctx.model, ctx.graph, ctx.criterion, ctx.calibration, self.slices)
        log: list[dict] = []

        def apply_step(name: str, now: int, after: int) -> None:
            ctx.prune_channels(name, strategy.chosen[name])
            entry = {"group": name, "removed_units": after, "loss_increase": round(strategy.increase[name], 5)}
            if ctx.trainer is not None and ctx.steps_per_layer:
                entry["loss"] = round(ctx.trainer.train(ctx.model, ctx.steps_per_layer), 4)
            log.append(entry)

        total = math.ceil(ctx.cost.baseline() * (1 - ctx.target))
        with ctx.progress.task(f"greedy steps ({len(groups)} trials each)", total) as bar:
            allocation = allocate(
                groups,
                ctx.cost,
                strategy,
                ctx.target,
                ctx.round_to,
                apply_step=apply_step,
                tick=lambda saved: bar.advance(saved, f"{len(log)} steps, last {log[-1]['group'] if log else ''}"),
            )
        ctx.removals.clear()
        ctx.removals.update(allocation.removed)
        return log
