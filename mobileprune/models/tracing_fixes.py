"""Adapters for architectures whose channel wiring torch-pruning's tracer cannot follow.

torch-pruning builds its dependency graph from autograd and understands convs, norms, element-wise ops,
concat and split. ShuffleNetV2's channel shuffle (view → transpose → view) interleaves channels of two
branches; the tracer crashes on it (ZeroDivisionError in its reshape index mapping, see Torch-Pruning
issues #14 and #45). We wrap the shuffle in a leaf module that the graph treats as a *barrier*: channels
that pass through it are never pruned, while the channels inside each branch still are.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch_pruning as tp
from torchvision.models import shufflenetv2


class ChannelShuffle(nn.Module):
    """`torchvision.models.shufflenetv2.channel_shuffle` as a module, so the graph can see it as a unit."""

    def __init__(self, groups: int, channels: int):
        super().__init__()
        self.groups = groups
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.view(b, self.groups, c // self.groups, h, w).transpose(1, 2).contiguous()
        return x.view(b, c, h, w)


class BarrierPruner(tp.pruner.function.BasePruningFunc):
    """A torch-pruning handler for modules whose channels must stay as they are.

    Distinct in/out functions mean torch-pruning builds no dependency *through* the module; the graph
    module drops every group that touches a barrier, so nothing ever calls these.
    """

    def prune_out_channels(self, layer: nn.Module, idxs):  # pragma: no cover - never called
        raise RuntimeError(f"{type(layer).__name__} channels cannot be pruned")

    def prune_in_channels(self, layer: nn.Module, idxs):  # pragma: no cover - never called
        raise RuntimeError(f"{type(layer).__name__} channels cannot be pruned")

    def get_out_channels(self, layer: nn.Module) -> int:
        return layer.channels

    def get_in_channels(self, layer: nn.Module) -> int:
        return layer.channels


BARRIER_TYPES: tuple[type[nn.Module], ...] = (ChannelShuffle,)


class TraceableShuffleResidual(shufflenetv2.InvertedResidual):
    """torchvision's ShuffleNetV2 block with its shuffle as a child module; same weights, same maths."""

    shuffle: ChannelShuffle

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return self.shuffle(out)


def make_traceable(model: nn.Module) -> nn.Module:
    """Rewrite known untraceable blocks in place (no weights change); returns the model."""
    for module in model.modules():
        if type(module) is shufflenetv2.InvertedResidual:
            last_bn = next(m for m in reversed(module.branch2) if isinstance(m, nn.BatchNorm2d))
            module.__class__ = TraceableShuffleResidual
            module.shuffle = ChannelShuffle(2, 2 * last_bn.num_features)
    return model


def customized_pruners() -> dict[type[nn.Module], tp.pruner.function.BasePruningFunc]:
    return {t: BarrierPruner() for t in BARRIER_TYPES}
