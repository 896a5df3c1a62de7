"""`obs`: layer-wise Optimal Brain Surgeon, Hessians from calibration images, no labels (see ../obs.py)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...errors import UserError
from ...registry import option
from ..obs import obs_sparsify
from .base import METHODS, SparsifyMethod

if TYPE_CHECKING:
    from ..run import SparsifyRun


@METHODS.register
@dataclass
class Obs(SparsifyMethod):
    name = "obs"
    description = "layer-wise OBS: saliency w²/[H⁻¹]qq and exact compensation of the kept weights (OBC/SparseGPT)"
    needs_images = True
    correct: bool = option(True, "fit each layer to the dense model's outputs (repairs earlier layers' errors)")

    def run(self, run: SparsifyRun) -> None:
        if run.config.scope == "global":
            raise UserError("--method obs sparsifies layer by layer: use --scope layer or erk")
        notes = run.masking("obs", lambda: self._solve(run))["notes"]
        run.notes.update(notes)
        zeroed, kept = notes["obs_mean_error"]["zeroed"], notes["obs_mean_error"]["compensated"]
        run.progress.log(f"OBS: mean relative layer output error {zeroed:.4f} zeroed → {kept:.4f} compensated")
        run.after_pruning()
        run.fine_tune(run.budget)

    def _solve(self, run: SparsifyRun) -> dict:
        """Masks and compensated weights for every layer, and the report's per-layer errors."""
        batches = run.calibration()
        layers = run.layers
        reference = copy.deepcopy(run.model).eval() if self.correct else None
        with run.progress.task(
            f"OBS ({len(layers)} layers, {sum(len(b) for b in batches)} images)", len(layers)
        ) as bar:
            run.masks, rows = obs_sparsify(
                run.model,
                layers,
                batches,
                run.sparsity,
                run.masks,
                tick=bar.advance,
                reference=reference,
                scope=run.config.scope,
            )
        zeroed = sum(r.error_zeroed for r in rows) / max(len(rows), 1)
        kept = sum(r.error_compensated for r in rows) / max(len(rows), 1)
        return {
            "notes": {
                "obs_layers": [r.to_json() for r in rows],
                "obs_mean_error": {"zeroed": round(zeroed, 5), "compensated": round(kept, 5)},
            }
        }
