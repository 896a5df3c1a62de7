"""`hessian`: Optimal Brain Damage saliency w² · diagonal Fisher (LeCun et al. 1989)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn
import torch_pruning as tp

from ...registry import option
from .base import CRITERIA, CalibrationData, Criterion
from .gradients import fill_gradients


@CRITERIA.register
@dataclass
class HessianCriterion(Criterion):
    """Optimal Brain Damage saliency w² · H, with H the diagonal Fisher (mean squared per-image gradient).

    torch-pruning's own accumulator keys its dictionaries inconsistently and keeps only the last sample,
    so the Fisher diagonal is accumulated here and handed to its scorer through `.grad`.
    """

    name = "hessian"
    description = "second-order OBD saliency w^2 * diag Fisher (LeCun et al. 1989) on calibration images"
    needs_data = True
    max_images: int = option(64, "images for the Fisher diagonal (one backward pass each, per prune)")

    def importance(self) -> tp.importance.Importance:
        return tp.importance.GroupHessianImportance(group_reduction="mean", normalizer=None)

    def prepare(self, model: nn.Module, data: CalibrationData | None) -> None:
        fill_gradients(model, data, squared=True, max_images=self.max_images)
