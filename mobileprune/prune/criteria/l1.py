"""`l1`: filter L1 norm over the whole dependency group (Li et al. 2017)."""

from __future__ import annotations

import torch_pruning as tp

from .base import CRITERIA, Criterion


@CRITERIA.register
class L1Criterion(Criterion):
    """Li et al. 2017, "Pruning Filters for Efficient ConvNets", summed over the whole group.

    A filter's L1 norm alone ignores that removing it also removes BN entries, depthwise filters and
    consumer input slices; torch-pruning's group magnitude averages the L1 norm over all of them.
    """

    name = "l1"
    description = "filter L1 norm (Li et al. 2017) over the dependency group"

    def importance(self) -> tp.importance.Importance:
        return tp.importance.GroupMagnitudeImportance(p=1, group_reduction="mean", normalizer=None)
