"""`hybrid`: structured first (`shrink`, whole filters), then a sparse method on what is left.

One of the background reports found this best overall: filters the network can lose go first (a dense
speed-up on every runtime), individual weights after them. The overall `--sparsity` counts removed filters'
weights and zeroed weights together, against the unpruned model's sparsifiable weights, so a hybrid point
sits on the same axis as the others. Sparsifying a `shrink` output folder is the same thing done in two
commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...errors import UserError
from ...registry import option
from ..masks import prunable_weights
from .base import METHODS, SparsifyMethod

if TYPE_CHECKING:
    from ..run import SparsifyRun


@METHODS.register
@dataclass
class Hybrid(SparsifyMethod):
    name = "hybrid"
    description = "shrink (whole filters, by params) first, then a sparse method to the overall sparsity"
    structured: float = option(0.7, "share of the parameters shrink keeps before sparsifying")
    then: str = option("gradual", "the sparse method after the structured step")

    def __post_init__(self) -> None:
        if not 0 < self.structured <= 1:
            raise UserError(f"hybrid: structured must be in (0, 1], not {self.structured}")
        if self.then == "hybrid" or self.then not in METHODS:
            raise UserError(f"hybrid: then must be one of {', '.join(n for n in METHODS.names() if n != 'hybrid')}")

    def run(self, run: SparsifyRun) -> None:
        from ...models import classifier_module
        from ...prune.plan import ChannelPlan

        before = len(run.plan.steps)
        saved = run.checkpoint.restored(run, "structured")
        if saved is None:
            saved = self._shrink(run)
            run.checkpoint.complete(run, "structured", saved)
        else:  # resumed past it: the same filters go again (the checkpoint's weights fit the smaller model)
            steps = ChannelPlan.from_json(saved["plan"]).steps
            ChannelPlan(steps[before:]).replay(run.model, run.example, [classifier_module(run.model, run.loaded.spec)])
            run.plan = ChannelPlan(steps)
        run.notes["structured"] = saved["notes"]
        needed = saved["sparsity"]
        run.progress.log(
            f"hybrid: shrink kept {1 - saved['notes']['removed_share']:.1%} of the sparsifiable weights; "
            f"{self.then} zeroes {needed:.1%} of those"
        )
        run.sparsity = needed
        METHODS.create(self.then, offered={"seed": run.config.seed}).run(run)

    def _shrink(self, run: SparsifyRun) -> dict:
        """Whole filters first (shrink, in memory; not resumable inside itself); the plan and the report's notes."""
        from ...prune.config import ShrinkConfig
        from ...prune.pipeline import shrink

        before = prunable_weights(run.model)
        labels_free = run.data is not None and not run.data.train.labeled
        config = ShrinkConfig(
            target=self.structured,
            distill=run.config.distill or labels_free,
            batch_size=run.config.batch_size,
            seed=run.config.seed,
            device=run.config.device,
        )
        result = shrink(run.loaded, config, run.data, None, run.progress)
        run.plan = result.plan
        after = prunable_weights(run.model)
        # zeros still needed, as a share of the weights that are left
        needed = max(0.0, run.sparsity * before - (before - after)) / after
        notes = {
            "target": self.structured,
            "params_ratio": result.report.ratios["params"],
            "macs_ratio": result.report.ratios["macs"],
            "allocation": result.report.allocation.get("strategy"),
            "removed_share": round(1 - after / before, 4),
            "then": self.then,
            "sparsity_after_it": round(needed, 4),
        }
        return {"plan": run.plan.to_json(), "notes": notes, "sparsity": needed}
