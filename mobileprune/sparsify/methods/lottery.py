"""`lottery`: iterative magnitude pruning with rewinding (Frankle & Carbin 2019; late rewinding, 2020).

Each of `rounds` rounds prunes by magnitude of the trained weights to the round's sparsity (the kept share
shrinks geometrically to the target), rewinds the surviving weights, and trains again with the masks held.
For a pretrained model "rewinding" means going back to the weights the fine-tune started from — the
pretrained ones (`rewind_step` 0) — or, late rewinding, to the weights after `rewind_step` steps of the
first round, which the lottery-ticket papers found more stable for large networks. The fine-tune budget is
split evenly over the rounds, so the method costs the same steps as the others.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...errors import UserError
from ...registry import option
from ..masks import MaskHold, WeightMasks, sparsity_of
from ..selection import magnitude_scores, masks_at
from .base import METHODS, SparsifyMethod

if TYPE_CHECKING:
    from ..run import SparsifyRun


class _Rewind(MaskHold):
    """A `MaskHold` that keeps a copy of the weights after `at` steps (late rewinding's target; 0: none)."""

    def __init__(self, model, masks, at: int):
        super().__init__(model, masks)
        self.at, self.done, self.saved = at, 0, None

    def step(self) -> None:
        super().step()
        self.done += 1
        if self.done == self.at:
            self.saved = copy.deepcopy(self.model.state_dict())


@METHODS.register
@dataclass
class Lottery(SparsifyMethod):
    name = "lottery"
    description = "iterative magnitude pruning, rewinding the kept weights between rounds (lottery tickets)"
    needs_training = True
    rounds: int = option(3, "prune-rewind-train rounds")
    rewind_step: int = option(0, "rewind to the weights after this many steps of round 1 (0: the pretrained ones)")

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.rewind_step < 0:
            raise UserError("lottery: rounds must be at least 1 and rewind_step not negative")

    def run(self, run: SparsifyRun) -> None:
        per_round = max(1, run.budget // self.rounds)
        if self.rewind_step >= per_round:
            raise UserError(f"lottery: rewind_step {self.rewind_step} is not inside round 1 ({per_round} steps)")
        initial = sparsity_of(run.model)
        rewind = copy.deepcopy(run.model.state_dict())  # (a resumed run has not loaded its saved weights yet)
        log = []
        for r in range(1, self.rounds + 1):
            kept = (1 - initial) * ((1 - run.sparsity) / (1 - initial)) ** (r / self.rounds)
            work = functools.partial(self._round, run, r, 1 - kept, per_round, rewind)
            result = run.masking(f"lottery/{r}", work)
            if r == 1 and self.rewind_step:
                rewind = result["rewind"]
            log.append({"round": r, "sparsity": round(1 - kept, 4), "steps": per_round})
        run.notes["rounds"] = log
        run.notes["rewound_to"] = (
            f"step {self.rewind_step} of round 1" if self.rewind_step else "the pretrained weights"
        )

    def _round(self, run: SparsifyRun, r: int, sparsity: float, steps: int, rewind: dict) -> dict:
        """Prune to `sparsity` by magnitude, rewind (after round 1), train; round 1 hands on a late rewind."""
        key = f"lottery/{r}"
        saved = run.checkpoint.partial(key)  # killed inside this round: its masks, step and late-rewind copy
        if saved is None:
            run.masks = masks_at(magnitude_scores(run.layers), sparsity, run.config.scope, run.masks)
            if r > 1:
                run.model.load_state_dict(rewind)
        else:
            run.masks = WeightMasks(saved["masks"])
        run.masks.apply(run.model)
        hold = _Rewind(run.model, run.masks, self.rewind_step if r == 1 else 0)
        if saved is not None:
            hold.done, hold.saved = saved["done"], saved["rewind"]

        def state() -> dict:
            return {"masks": dict(run.masks.masks), "done": hold.done, "rewind": hold.saved}

        try:
            run.train(steps, hold, f"lottery round {r}/{self.rounds} at {sparsity:.0%}", partial=(key, state))
        finally:
            hold.remove()
        return {"rewind": hold.saved}
