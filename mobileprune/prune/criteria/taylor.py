"""`taylor`: first-order Taylor |weight x gradient| over the group (Molchanov et al. 2019)."""

from __future__ import annotations

import torch.nn as nn
import torch_pruning as tp

from .base import CRITERIA, CalibrationData, Criterion
from .gradients import fill_gradients


@CRITERIA.register
class TaylorCriterion(Criterion):
    """First-order Taylor (Molchanov et al. 2019): |weight x gradient| summed over the group."""

    name = "taylor"
    description = "first-order Taylor |w * dL/dw| (Molchanov et al. 2019) on calibration images"
    needs_data = True

    def importance(self) -> tp.importance.Importance:
        return tp.importance.GroupTaylorImportance(group_reduction="mean", normalizer=None)

    def prepare(self, model: nn.Module, data: CalibrationData | None) -> None:
        fill_gradients(model, data, squared=False)
