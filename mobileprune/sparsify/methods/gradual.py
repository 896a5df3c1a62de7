"""`gradual`: sparsity rises along Zhu & Gupta's cubic schedule while the model fine-tunes (2017).

    s_t = s_f + (s_i - s_f) (1 - t / T)³,   t = 0 … T

fast at first, when many weights are redundant, slow at the end, when the remaining ones matter and the
network needs steps to adapt between prunes. The masks are recomputed by magnitude `prunes` times over
the first `ramp` share of the fine-tune steps; the remaining steps train at the final sparsity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...errors import UserError
from ...registry import option
from ..masks import MaskHold, WeightMasks, sparsity_of
from ..selection import magnitude_scores, masks_at
from .base import METHODS, SparsifyMethod

if TYPE_CHECKING:
    import torch.nn as nn

    from ..run import SparsifyRun


def cubic_sparsity(step: int, ramp_steps: int, final: float, initial: float = 0.0) -> float:
    """Zhu & Gupta's sparsity after `step` of `ramp_steps` (`final` from then on)."""
    if ramp_steps <= 0 or step >= ramp_steps:
        return final
    return final + (initial - final) * (1 - max(step, 0) / ramp_steps) ** 3


def prune_steps(ramp_steps: int, prunes: int) -> list[int]:
    """The steps after which the masks grow: `prunes` of them, evenly spaced, the last at `ramp_steps`."""
    count = max(1, min(prunes, ramp_steps))
    return sorted({max(1, round(k * ramp_steps / count)) for k in range(1, count + 1)})


class GradualPruning(MaskHold):
    """A `MaskHold` whose masks grow by magnitude at the scheduled steps."""

    def __init__(
        self, model: nn.Module, layers: dict[str, nn.Module], masks: WeightMasks, schedule: dict[int, float], scope: str
    ):
        super().__init__(model, masks)
        self.layers, self.schedule, self.scope, self.done = layers, schedule, scope, 0

    def step(self) -> None:
        self.done += 1
        target = self.schedule.get(self.done)
        if target is not None:
            self.masks.masks = masks_at(magnitude_scores(self.layers), target, self.scope, self.masks).masks
        super().step()


@METHODS.register
@dataclass
class Gradual(SparsifyMethod):
    name = "gradual"
    description = "Zhu & Gupta cubic schedule: masks grow by magnitude while fine-tuning"
    needs_training = True
    ramp: float = option(0.75, "share of the fine-tune steps over which sparsity rises to its target")
    prunes: int = option(20, "how many times the masks grow")

    def __post_init__(self) -> None:
        if not 0 < self.ramp <= 1 or self.prunes < 1:
            raise UserError("gradual: ramp must be in (0, 1] and prunes at least 1")

    def run(self, run: SparsifyRun) -> None:
        steps = run.budget
        ramp_steps = max(1, round(self.ramp * steps))
        initial = sparsity_of(run.model)
        schedule = {
            t: cubic_sparsity(t, ramp_steps, run.sparsity, initial) for t in prune_steps(ramp_steps, self.prunes)
        }
        run.notes["schedule"] = {str(t): round(s, 4) for t, s in schedule.items()}
        run.masking("gradual", lambda: self._train(run, steps, schedule))

    def _train(self, run: SparsifyRun, steps: int, schedule: dict[int, float]) -> dict:
        layers = run.layers
        masks = WeightMasks({name: run.masks.keep(name, m) for name, m in layers.items()})
        saved = run.checkpoint.partial("gradual")  # killed while training: the masks and step it had reached
        if saved is not None:
            masks = WeightMasks(saved["masks"])
        run.masks = masks
        hold = GradualPruning(run.model, layers, masks, schedule, run.config.scope)
        hold.done = saved["done"] if saved is not None else 0

        def state() -> dict:
            return {"masks": dict(hold.masks.masks), "done": hold.done}

        try:
            label = f"gradual to {run.sparsity:.0%} ({len(schedule)} prunes)"
            run.train(steps, hold, label, partial=("gradual", state))
        finally:
            hold.remove()
        return {}
