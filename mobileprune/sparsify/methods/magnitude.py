"""`magnitude`: zero the smallest |w| at once (Han et al. 2015), then fine-tune with the masks held."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..selection import magnitude_scores, masks_at
from .base import METHODS, SparsifyMethod

if TYPE_CHECKING:
    from ..run import SparsifyRun


@METHODS.register
@dataclass
class Magnitude(SparsifyMethod):
    name = "magnitude"
    description = "one-shot |w| pruning (Han et al. 2015), then masked fine-tuning"

    def run(self, run: SparsifyRun) -> None:
        def zero() -> dict:
            run.masks = masks_at(magnitude_scores(run.layers), run.sparsity, run.config.scope, run.masks)
            run.masks.apply(run.model)
            return {}

        run.masking("magnitude", zero)
        run.after_pruning()
        run.fine_tune(run.budget)
