"""`oneshot`: every group pruned at once, in network order; retraining (if any) happens afterwards."""

from __future__ import annotations

from .base import SCHEDULES, Schedule, ScheduleContext


@SCHEDULES.register
class OneShot(Schedule):
    name = "oneshot"
    description = "all groups at once; retraining afterwards"

    def run(self, ctx: ScheduleContext) -> list[dict]:
        names = [g.name for g in ctx.graph.groups if ctx.removals.get(g.name)]
        with ctx.progress.task("pruning", len(names)) as bar:
            for name in names:
                ctx.prune_group(name)
                bar.advance()
        return [{"group": n, "channels_after": ctx.graph.channels(n)} for n in names]
