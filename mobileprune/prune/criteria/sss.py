"""`sss`: learned channel gates under a sparse penalty (sparse structure selection, Huang & Wang 2018)."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..graph import PruningGraph
from ..sparsity import ChannelGates, SparsityRegulariser
from .base import CRITERIA, Criterion
from .l1 import L1Criterion


@CRITERIA.register
class SSSCriterion(Criterion):
    """Sparse structure selection (Huang & Wang 2018): learned per-channel gates under a sparse penalty.

    `--sparsity-train` trains a gate per channel of every group together with the weights (see
    `sparsity.ChannelGates`); the gates are folded into the weights afterwards and |gate| is the score,
    one scale for all layers, so a global ranking thresholds it directly as the paper does. Gates that
    reached exactly zero are all equally dead; among them the smaller filters (L1) go first.
    """

    name = "sss"
    description = "learned channel gates with a sparse penalty (sparse structure selection, Huang & Wang 2018)"
    comparable_across_layers = True
    sparsity_training = "required"

    def __init__(self) -> None:
        self._gates: ChannelGates | None = None
        self._values: dict[str, torch.Tensor] | None = None
        self._tie_break = L1Criterion()

    def sparsity_regulariser(self, model: nn.Module, graph: PruningGraph, strength: float) -> SparsityRegulariser:
        self._gates, self._values = ChannelGates(model, graph, strength), None
        return self._gates

    def scores(self, graph: PruningGraph, name: str) -> torch.Tensor:
        if self._gates is None:
            raise RuntimeError("sss ranks by gates learned in sparsity training: call sparsity_regulariser() and train")
        if self._values is None:
            self._values = self._gates.values()
        gates = self._values[name].abs()[graph.original_channels(name)]
        l1 = self._tie_break.scores(graph, name)
        return gates + 1e-6 * (float(gates.max()) or 1.0) * l1 / (float(l1.max()) or 1.0)
