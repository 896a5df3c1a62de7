"""`layerwise`: prune one group, retrain briefly, evaluate, move to the next (input to output)."""

from __future__ import annotations

from .base import SCHEDULES, Schedule, ScheduleContext
from .oneshot import OneShot


@SCHEDULES.register
class LayerWise(Schedule):
    retrains_while_pruning = True
    name = "layerwise"
    description = "one group at a time, --steps-per-layer retraining batches after each"

    def run(self, ctx: ScheduleContext) -> list[dict]:
        names = [g.name for g in ctx.graph.groups if ctx.removals.get(g.name)]
        if ctx.trainer is None:  # nothing to retrain with: layer order makes no difference
            return OneShot().run(ctx)
        saved = ctx.resume or {"pruned": [], "log": []}  # a run killed inside this schedule: where it was
        pruned, log = list(saved["pruned"]), list(saved["log"])
        total = len(names) * ctx.steps_per_layer
        with ctx.progress.task("prune + retrain, layer by layer", total) as bar:
            bar.advance(len(log) * ctx.steps_per_layer)
            for name in names[len(log) :]:
                if name not in pruned:  # else pruned before the kill, its retraining was under way
                    ctx.prune_group(name)
                    pruned.append(name)
                    self._save(ctx, pruned, log)

                def tick(loss: float, name: str = name) -> None:
                    bar.advance(1, f"{name} loss {loss:.3f}")

                loss = ctx.trainer.train(ctx.model, ctx.steps_per_layer, tick=tick)
                entry = {"group": name, "channels_after": ctx.graph.channels(name), "loss": round(loss, 4)}
                if ctx.quick_top1 is not None:
                    entry["quick_top1"] = round(ctx.quick_top1(ctx.model), 4)
                log.append(entry)
                self._save(ctx, pruned, log)
        return log

    @staticmethod
    def _save(ctx: ScheduleContext, pruned: list[str], log: list[dict]) -> None:
        if ctx.save_partial is not None:
            ctx.save_partial({"pruned": list(pruned), "log": list(log)})
