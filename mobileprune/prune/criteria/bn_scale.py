"""`bn`: batch-norm scale |gamma| (network slimming, Liu et al. 2017)."""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn
import torch_pruning as tp

from ..graph import PruningGraph
from .base import CRITERIA, CalibrationData, Criterion
from .l1 import L1Criterion


@CRITERIA.register
class BNScaleCriterion(Criterion):
    """Network slimming (Liu et al. 2017): |γ| of the batch norms in the group.

    Only meaningful after training with an L1 penalty on γ (`shrink --sparsity-train`), which drives the
    scale of useless channels towards zero. A group without batch norm falls back to the filters' L1 norm
    (said once as a warning). A checkpoint with folded BN has every γ equal: that is warned about too.
    """

    name = "bn"
    description = "batch-norm scale |gamma| (network slimming, Liu et al. 2017)"
    comparable_across_layers = True
    sparsity_training = "optional"

    def __init__(self) -> None:
        self._fallback = L1Criterion()
        self._warned: set[str] = set()

    def importance(self) -> tp.importance.Importance:
        return tp.importance.BNScaleImportance(group_reduction="mean", normalizer=None)

    def prepare(self, model: nn.Module, data: CalibrationData | None) -> None:
        gammas = [m.weight.detach() for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if gammas and "equal" not in self._warned:
            flat = torch.cat([g.flatten() for g in gammas if g is not None])
            if flat.numel() and float(flat.max() - flat.min()) <= 1e-3 * float(flat.abs().max()):
                self._warned.add("equal")
                warnings.warn(
                    "every batch-norm scale (gamma) is equal (a folded-BN checkpoint?): the bn criterion ranks "
                    "nothing until the model is trained with --sparsity-train",
                    stacklevel=2,
                )

    def scores(self, graph: PruningGraph, name: str) -> torch.Tensor:
        group = graph.tp_group(name)
        if not any(isinstance(dep.target.module, nn.modules.batchnorm._BatchNorm) for dep, _ in group):
            if name not in self._warned:
                self._warned.add(name)
                warnings.warn(f"{name}: no batch norm in this group; ranked by filter L1 norm", stacklevel=2)
            return self._fallback.scores(graph, name)
        return self.importance()(group).detach().float().cpu()
