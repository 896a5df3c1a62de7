"""Channel-ranking criteria: which channels of a group to remove first.

Each criterion is a small class registered by name, so `--criterion NAME` is a dictionary lookup and
schedules never ask which one they hold. `scores(graph, name)` gives one score per root channel of group
`name` (higher = more important). Criteria that look at data (`taylor`, `hessian`, `ucb`) get calibration
images through `prepare()`, called on the current model before a group is scored: a pruned model has new
weights and shapes, so gradients from before a prune are stale.

The targets for data criteria are the unpruned model's own top-1 predictions on those images: no labels
needed, and the loss measures what pruning should preserve, agreement with the original model. (At the
original weights a KL-to-teacher loss has zero gradient, so it cannot rank anything.)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_pruning as tp

from .graph import PruningGraph
from .registry import Registry
from .sparsity import BNScaleL1, ChannelGates, SparsityRegulariser

CRITERIA: Registry[Criterion] = Registry("criterion")


def get_criterion(name: str) -> Criterion:
    return CRITERIA.create(name)


@dataclass
class CalibrationData:
    """Images and the unpruned model's predictions on them: what data criteria rank channels with."""

    batches: list[torch.Tensor]
    targets: list[torch.Tensor]  # top-1 class of the unpruned model per image

    @classmethod
    @torch.no_grad()
    def from_model(cls, model: nn.Module, batches: Sequence[torch.Tensor]) -> CalibrationData:
        model.eval()
        return cls(list(batches), [model(x).argmax(1) for x in batches])


class Criterion:
    """Ranks the channels of one dependency group."""

    name: ClassVar[str]
    description: ClassVar[str]
    needs_data: ClassVar[bool] = False
    # True when raw scores mean the same in every layer (BN scale factors): a global ranking may compare
    # them directly, as network slimming does; otherwise they are normalised per group first.
    comparable_across_layers: ClassVar[bool] = False
    # Whether the criterion reads scales that sparsity training (`--sparsity-train`) shapes: "required"
    # when it has nothing to rank without it, "optional" when trained scales merely rank better.
    sparsity_training: ClassVar[Literal["unused", "optional", "required"]] = "unused"

    def sparsity_regulariser(self, model: nn.Module, graph: PruningGraph, strength: float) -> SparsityRegulariser:
        """What `--sparsity-train` trains with: network slimming's L1 on BN scales unless the method has its own."""
        return BNScaleL1(model, strength)

    def prepare(self, model: nn.Module, data: CalibrationData | None) -> None:
        """Look at the current model (and data) before scoring; data-free criteria need nothing."""

    def scores(self, graph: PruningGraph, name: str) -> torch.Tensor:
        """One non-negative score per root channel of group `name`; the lowest are removed first."""
        return self._importance(graph.tp_group(name)).detach().float().cpu()

    _importance: tp.importance.Importance


@CRITERIA.register
class L1Criterion(Criterion):
    """Li et al. 2017, "Pruning Filters for Efficient ConvNets", summed over the whole group.

    A filter's L1 norm alone ignores that removing it also removes BN entries, depthwise filters and
    consumer input slices; torch-pruning's group magnitude averages the L1 norm over all of them.
    """

    name = "l1"
    description = "filter L1 norm (Li et al. 2017) over the dependency group"

    def __init__(self) -> None:
        self._importance = tp.importance.GroupMagnitudeImportance(p=1, group_reduction="mean", normalizer=None)


@CRITERIA.register
class RandomCriterion(Criterion):
    """The honest baseline: a method that does not beat it has not learned anything about the network."""

    name = "random"
    description = "seeded random ranking (baseline)"

    def __init__(self, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def scores(self, graph: PruningGraph, name: str) -> torch.Tensor:
        return torch.rand(graph.channels(name), generator=self.generator)


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
        self._importance = tp.importance.BNScaleImportance(group_reduction="mean", normalizer=None)
        self._fallback = L1Criterion()
        self._warned: set[str] = set()

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
        return self._importance(group).detach().float().cpu()


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


@CRITERIA.register
class TaylorCriterion(Criterion):
    """First-order Taylor (Molchanov et al. 2019): |weight x gradient| summed over the group."""

    name = "taylor"
    description = "first-order Taylor |w * dL/dw| (Molchanov et al. 2019) on calibration images"
    needs_data = True

    def __init__(self) -> None:
        self._importance = tp.importance.GroupTaylorImportance(group_reduction="mean", normalizer=None)

    def prepare(self, model: nn.Module, data: CalibrationData | None) -> None:
        _gradients(model, data, squared=False)


@CRITERIA.register
class HessianCriterion(Criterion):
    """Optimal Brain Damage saliency w² · H, with H the diagonal Fisher (mean squared per-image gradient).

    torch-pruning's own accumulator keys its dictionaries inconsistently and keeps only the last sample,
    so the Fisher diagonal is accumulated here and handed to its scorer through `.grad`.
    """

    name = "hessian"
    description = "second-order OBD saliency w^2 * diag Fisher (LeCun et al. 1989) on calibration images"
    needs_data = True

    def __init__(self, max_images: int = 64) -> None:
        self.max_images = max_images
        self._importance = tp.importance.GroupHessianImportance(group_reduction="mean", normalizer=None)

    def prepare(self, model: nn.Module, data: CalibrationData | None) -> None:
        _gradients(model, data, squared=True, max_images=self.max_images)


@CRITERIA.register
class UCBCriterion(Criterion):
    """Multi-armed bandit channel selection (Ameen & Vadera 2019): channels are arms, UCB1 picks pulls.

    Pulling arm c masks channel c on one calibration batch; its reward is the loss increase that
    causes (so the least important arms earn the least). UCB1 spends `pulls_per_channel` x channels pulls
    where they tell most; the score is each arm's mean loss increase.
    """

    name = "ucb"
    description = "UCB1 bandit over channels, reward = loss increase when masked (Ameen & Vadera 2019)"
    needs_data = True

    def __init__(self, pulls_per_channel: float = 2.0, exploration: float = 0.5, seed: int = 0) -> None:
        self.pulls_per_channel = pulls_per_channel
        self.exploration = exploration
        self.generator = torch.Generator().manual_seed(seed)
        self.model: nn.Module | None = None
        self.data: CalibrationData | None = None

    def prepare(self, model: nn.Module, data: CalibrationData | None) -> None:
        self.model, self.data = model, data

    @torch.no_grad()
    def scores(self, graph: PruningGraph, name: str) -> torch.Tensor:
        from .sensitivity import masked

        if self.model is None or not self.data:
            raise RuntimeError("ucb needs calibration images: call prepare() first")
        model, data = self.model.eval(), self.data
        group = graph.group(name)
        arms = graph.channels(name)
        base = [float(F.cross_entropy(model(x), t)) for x, t in zip(data.batches, data.targets, strict=True)]
        total = torch.zeros(arms)
        pulls = torch.zeros(arms)
        budget = max(arms, math.ceil(self.pulls_per_channel * arms))
        for step in range(budget):
            if step < arms:
                arm = step  # every arm once
            else:
                mean = total / pulls
                spread = float(mean.max() - mean.min()) or 1.0  # rewards are loss deltas: scale the bonus
                bonus = self.exploration * spread * torch.sqrt(2 * math.log(step + 1) / pulls)
                arm = int(torch.argmax(-(mean) + bonus))  # explore the arms that look least important
            b = int(torch.randint(len(data.batches), (1,), generator=self.generator))
            with masked(model, group, [arm]):
                loss = float(F.cross_entropy(model(data.batches[b]), data.targets[b]))
            total[arm] += loss - base[b]
            pulls[arm] += 1
        return (total / pulls).clamp(min=0)


def _gradients(model: nn.Module, data: CalibrationData | None, squared: bool, max_images: int = 0) -> None:
    """Fill every parameter's .grad: the summed gradient, or (squared) the mean squared per-image one."""
    if not data:
        raise RuntimeError("this criterion needs calibration images: call prepare() with data")
    was_training = model.training
    model.eval()  # BN uses its running statistics, as at inference
    params = [p for p in model.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
        p.grad = None
    accumulated = [torch.zeros_like(p) for p in params]
    count = 0
    with torch.enable_grad():
        for x, t in zip(data.batches, data.targets, strict=True):
            if not squared:
                F.cross_entropy(model(x), t, reduction="sum").backward()
                continue
            for i in range(len(x)):
                if count >= max_images:
                    break
                model.zero_grad(set_to_none=True)
                F.cross_entropy(model(x[i : i + 1]), t[i : i + 1]).backward()
                for acc, p in zip(accumulated, params, strict=True):
                    if p.grad is not None:
                        acc += p.grad.detach() ** 2
                count += 1
    if squared:
        for acc, p in zip(accumulated, params, strict=True):
            p.grad = acc / max(count, 1)
    for p, flag in zip(params, flags, strict=True):
        p.requires_grad_(flag)
    model.train(was_training)
