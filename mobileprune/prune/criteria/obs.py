"""`obs`: remove the channels the re-fit of their consumers makes up for best (structured layer-wise OBS).

Reconstruction re-fits every consumer of a pruned group by least squares (reconstruct.py). What it cannot
make up for is fixed by which channels go: a channel that the kept ones predict well costs almost nothing
once its consumer is re-fitted, however large its weights. For a linear consumer y = W x with input
covariance Σ and P = Σ⁻¹, removing input channel j and re-fitting the rest optimally raises the output
error by exactly

    ΔE_j = ||W[:, j]||² / P_jj

(Optimal Brain Surgeon with the layer's Hessian 2Σ; Hassibi & Stork 1993, layer-wise as in Dong et al.
2017 and Frantar & Alistarh 2022). Channels are removed greedily, cheapest first; after each removal W
takes OBS's compensating update and P loses the channel (a rank-one downdate), so the next choice sees what
the kept channels can still express. A group's channels usually reach several consumers (a residual
stream feeds every block of its stage): their errors, each relative to its consumer's output energy, add.

A channel's score is the total relative error once it and every channel chosen before it are gone, so
scores grow along the order and the lowest go first. The statistics are the ones compensated sensitivity
uses, on the same images (`CalibrationData.fitting`: the reconstruction images, held apart from the
probes). Consumers without trustworthy statistics (too few samples per channel) are left out; a group
with none is ranked by filter L1.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch_pruning as tp
from torch_pruning.pruner import function

from ..compensation import InputStatistics
from ..graph import PruningGraph, is_depthwise
from ..reconstruct import refittable_layers
from .base import CRITERIA, CalibrationData, Criterion
from .l1 import L1Criterion

_INPUT_SIDE = (function.prune_conv_in_channels, function.prune_linear_in_channels)
# relative to the mean input variance: keeps P finite for dead or duplicate channels while charging a
# redundant channel about what the re-fit leaves (the weakest ridge reconstruction chooses is 1e-4)
RIDGE = 1e-4


@CRITERIA.register
class OBSCriterion(Criterion):
    name = "obs"
    description = "structured layer-wise OBS: the error left once consumers are re-fitted"
    needs_data = True
    needs_fitting_images = True

    def __init__(self) -> None:
        self.statistics: InputStatistics | None = None
        self.names: dict[nn.Module, str] = {}
        self.cache: dict[tuple[str, int], torch.Tensor] = {}

    def prepare(self, model: nn.Module, data: CalibrationData | None) -> None:
        """Input statistics of every dense layer on the fitting images (the calibration images without)."""
        self.cache = {}
        self.names = {m: n for n, m in model.named_modules()}
        if data is None:
            self.statistics = None
            return
        images = data.fitting or data.batches
        self.statistics = InputStatistics.measure(model, refittable_layers(model), images)

    def scores(self, graph: PruningGraph, name: str) -> torch.Tensor:
        channels = graph.channels(name)
        key = (name, channels)
        if key not in self.cache:
            consumers = self._consumers(graph.tp_group(name))
            if consumers:
                self.cache[key] = _greedy_obs(consumers, channels)
            else:
                self.cache[key] = L1Criterion().scores(graph, name)
        return self.cache[key]

    def _consumers(self, group: tp.dependency.Group) -> list[_Consumer]:
        found = []
        for item in group.items:
            layer, fn = item.dep.layer, item.dep.pruning_fn
            if fn not in _INPUT_SIDE or is_depthwise(layer) or getattr(layer, "groups", 1) != 1:
                continue
            layer_name = self.names.get(layer)
            if self.statistics is None or layer_name not in self.statistics:
                continue
            covariance = self.statistics.covariance[layer_name]
            if covariance.shape[0] != layer.weight.shape[1]:  # measured before this layer lost inputs
                continue
            found.append(_Consumer.of(layer, covariance, list(item.idxs), list(item.root_idxs)))
        return found


class _Consumer:
    """One consumer's weights (rows × input channels), inverse input covariance, and which of its inputs
    each root channel of the group is."""

    def __init__(self, weight: torch.Tensor, precision: torch.Tensor, energy: float, idxs: list[int], roots: list[int]):
        self.weight, self.precision, self.energy = weight, precision, energy
        self.idxs, self.roots = torch.tensor(idxs), torch.tensor(roots)
        self.alive = torch.ones(len(idxs), dtype=torch.bool)
        self.position = {root: k for k, root in enumerate(roots)}

    @classmethod
    def of(cls, layer: nn.Module, covariance: torch.Tensor, idxs: list[int], roots: list[int]) -> _Consumer:
        w = layer.weight.detach().double().cpu()
        weight = w.movedim(1, -1).reshape(-1, w.shape[1])  # a k×k conv: every tap is a row of the same inputs
        sigma = covariance.double().cpu()
        ridge = RIDGE * float(sigma.diagonal().mean().clamp_min(1e-12))
        precision = torch.linalg.inv(sigma + ridge * torch.eye(sigma.shape[0], dtype=sigma.dtype))
        energy = float(torch.einsum("ri,ij,rj->", weight, sigma, weight).clamp_min(1e-12))
        return cls(weight, precision, energy, idxs, roots)

    def costs(self, channels: int) -> torch.Tensor:
        """Relative output error of removing each root channel now (0 where this consumer does not read it)."""
        diagonal = self.precision.diagonal()[self.idxs]
        column = self.weight[:, self.idxs].pow(2).sum(0)
        usable = self.alive & (diagonal > 0)
        cost = torch.where(usable, column / diagonal.clamp_min(1e-300), 0.0) / self.energy
        return torch.zeros(channels, dtype=torch.float64).index_add_(0, self.roots, cost)

    def remove(self, root: int) -> None:
        """OBS's update: the other inputs take over what the root's input did; P forgets it."""
        k = self.position.get(root)
        if k is None or not self.alive[k]:
            return
        self.alive[k] = False
        i = int(self.idxs[k])
        pivot = float(self.precision[i, i])
        if pivot <= 0:
            return
        row = self.precision[i].clone()
        self.weight -= torch.outer(self.weight[:, i], row) / pivot
        self.precision -= torch.outer(row, row) / pivot


def _greedy_obs(consumers: list[_Consumer], channels: int) -> torch.Tensor:
    """Cumulative relative error along the greedy removal order (one score per root channel)."""
    scores = torch.empty(channels)
    gone = torch.zeros(channels, dtype=torch.bool)
    total = 0.0
    for _ in range(channels):
        cost = sum(c.costs(channels) for c in consumers)
        cost = cost.masked_fill(gone, float("inf"))
        j = int(torch.argmin(cost))
        total += float(cost[j])
        scores[j] = total
        gone[j] = True
        for consumer in consumers:
            consumer.remove(j)
    return scores
