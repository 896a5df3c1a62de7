"""Parameters and MACs: counted on a real model, and predicted exactly for a channel allocation.

`LayerCosts` records each touched layer's shape and output size once, then predicts the parameter and
MAC count of any per-group channel removal (conv, linear and channel-wise layers) without pruning
anything. `ParamsCost` and `MacsCost` are the `--by params` and `--by macs` cost models on top of it; the
shrink pipeline checks the prediction against the really pruned model.

MACs count multiply-accumulates of convs and linears (the convention of the MobileNet papers:
MobileNetV1-224 = 569M, MobileNetV2-224 = 300M).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..graph import ChannelGroup, is_depthwise
from .base import COST_MODELS


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int

    def get(self, metric: str) -> int:
        if metric not in ("params", "macs"):
            raise KeyError(f"Cost counts params and macs, not {metric}")
        return getattr(self, metric)


def forward_with_hooks(model: nn.Module, example: torch.Tensor, hooks: Iterable[tuple[nn.Module, Callable]]) -> None:
    """One eval-mode, no-grad forward of a single sample with forward hooks on the given modules, removed after."""
    handles = [module.register_forward_hook(hook) for module, hook in hooks]
    try:
        with torch.no_grad():
            model.eval()(example[:1])
    finally:
        for h in handles:
            h.remove()


def count_cost(model: nn.Module, example_input: torch.Tensor) -> Cost:
    """Parameters and MACs of `model` for one input of `example_input`'s size."""
    macs = 0

    def hook(module: nn.Module, inputs, output) -> None:
        nonlocal macs
        per_sample = output.numel() // output.shape[0]
        if isinstance(module, nn.modules.conv._ConvNd):
            kernel = math.prod(module.kernel_size)
            macs += per_sample * (module.in_channels // module.groups) * kernel
        elif isinstance(module, nn.Linear):
            macs += per_sample * module.in_features

    layers = [m for m in model.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    forward_with_hooks(model, example_input, [(m, hook) for m in layers])
    return Cost(sum(p.numel() for p in model.parameters()), int(macs))


@dataclass
class _Layer:
    kind: str  # "conv", "dwconv", "linear", "channelwise"
    out0: int
    in0: int
    groups: int
    kernel: int
    bias: bool
    positions: int  # output positions per sample (H*W for convs, tokens for linears)
    own_params: int  # parameters owned by the module, for channel-wise layers

    def cost(self, removed_out: int, removed_in: int) -> tuple[int, int]:
        out = self.out0 - removed_out
        if self.kind == "dwconv":
            weights = out * self.kernel
            return weights + (out if self.bias else 0), weights * self.positions
        if self.kind in ("conv", "linear"):
            cin = self.in0 - removed_in
            weights = out * (cin // self.groups) * self.kernel
            return weights + (out if self.bias else 0), weights * self.positions
        # channel-wise layers (norms, PReLU, ...): every owned parameter is a per-channel vector
        return self.own_params * out // max(1, self.out0), 0


class LayerCosts:
    """Predicts parameters and MACs after removing `removed[group]` units from each group."""

    def __init__(self, model: nn.Module, example_input: torch.Tensor, groups: list[ChannelGroup]):
        self.groups = {g.name: g for g in groups}
        self.baseline = count_cost(model, example_input)
        layers = _layer_shapes(model, example_input, {m.module for g in groups for m in g.members})
        self._layers = layers
        base_p, base_m = self._sum(layers, {}, {})
        # parameters and MACs that no group touches (stem input side, embeddings, ...)
        self._fixed = Cost(self.baseline.params - base_p, self.baseline.macs - base_m)
        self._touch: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
        for g in groups:
            for m in g.members:
                self._touch[m.module].append((g.name, m.side, m.per_unit(len(g.units))))

    def predict(self, removed: Mapping[str, int]) -> Cost:
        out, inn = self._removed_per_layer(removed, self._layers)
        params, macs = self._sum(self._layers, out, inn)
        return Cost(self._fixed.params + params, self._fixed.macs + macs)

    def saving(self, removed: Mapping[str, int], group: str, extra: int) -> Cost:
        """How much removing `extra` more units from `group` saves, given `removed` so far."""
        names = self.groups[group].modules()
        layers = {n: self._layers[n] for n in names if n in self._layers}
        before = self._sum(layers, *self._removed_per_layer(removed, layers))
        after_removed = {**removed, group: removed.get(group, 0) + extra}
        after = self._sum(layers, *self._removed_per_layer(after_removed, layers))
        return Cost(before[0] - after[0], before[1] - after[1])

    def channels_after(
        self, removed: Mapping[str, int], names: Iterable[str] | None = None
    ) -> dict[str, tuple[int, int]]:
        """(input, output) channels of each conv/linear (of `names`, default all) after `removed`."""
        layers = {n: self._layers[n] for n in (names if names is not None else self._layers) if n in self._layers}
        out, inn = self._removed_per_layer(removed, layers)
        return {
            n: (layer.in0 - inn.get(n, 0), layer.out0 - out.get(n, 0))
            for n, layer in layers.items()
            if layer.kind != "channelwise"
        }

    def macs_per_layer(self) -> dict[str, int]:
        """MACs of each conv/linear some group touches, unpruned."""
        return {n: layer.cost(0, 0)[1] for n, layer in self._layers.items() if layer.kind != "channelwise"}

    def _removed_per_layer(self, removed: Mapping[str, int], layers) -> tuple[dict, dict]:
        out: dict[str, int] = defaultdict(int)
        inn: dict[str, int] = defaultdict(int)
        for name in layers:
            for group, side, mult in self._touch.get(name, ()):
                k = removed.get(group, 0) * mult
                if k:
                    (out if side == "out" else inn)[name] += k
        return out, inn

    @staticmethod
    def _sum(layers: Mapping[str, _Layer], out: Mapping[str, int], inn: Mapping[str, int]) -> tuple[int, int]:
        params = macs = 0
        for name, layer in layers.items():
            p, m = layer.cost(out.get(name, 0), inn.get(name, 0))
            params += p
            macs += m
        return params, macs


def _layer_shapes(model: nn.Module, example_input: torch.Tensor, names: set[str]) -> dict[str, _Layer]:
    """Record shape and output size of each module that some group touches."""
    modules = {n: m for n, m in model.named_modules() if n in names}
    positions: dict[str, int] = {}

    def make_hook(name: str):
        def hook(module, inputs, output):
            if isinstance(module, nn.modules.conv._ConvNd):
                positions[name] = math.prod(output.shape[2:])
            elif isinstance(module, nn.Linear):
                positions[name] = output.numel() // (output.shape[0] * output.shape[-1])

        return hook

    forward_with_hooks(model, example_input, [(m, make_hook(n)) for n, m in modules.items()])

    layers: dict[str, _Layer] = {}
    for name, m in modules.items():
        own = sum(p.numel() for p in m.parameters(recurse=False))
        if isinstance(m, nn.modules.conv._ConvNd):
            kind = "dwconv" if is_depthwise(m) else "conv"
            layers[name] = _Layer(
                kind,
                m.out_channels,
                m.in_channels,
                m.groups,
                math.prod(m.kernel_size),
                m.bias is not None,
                positions.get(name, 0),
                own,
            )
        elif isinstance(m, nn.Linear):
            layers[name] = _Layer(
                "linear",
                m.out_features,
                m.in_features,
                1,
                1,
                m.bias is not None,
                positions.get(name, 1),
                own,
            )
        else:
            channels = _channel_count(m)
            layers[name] = _Layer("channelwise", channels, channels, 1, 1, False, 0, own)
    return layers


def _channel_count(module: nn.Module) -> int:
    for attr in ("num_features", "num_channels", "num_parameters"):
        if hasattr(module, attr):
            return int(getattr(module, attr))
    first = next(module.parameters(recurse=False))
    return int(first.shape[0])


@dataclass
class _AnalyticCost:
    """A `CostModel` counting one field of `Cost` with `LayerCosts`."""

    model: nn.Module
    example: torch.Tensor
    groups: list[ChannelGroup]
    metric: str = field(init=False)
    layers: LayerCosts = field(init=False)

    def __post_init__(self) -> None:
        self.layers = LayerCosts(self.model, self.example, self.groups)

    def baseline(self) -> float:
        return float(self.layers.baseline.get(self.metric))

    def predict(self, removed: Mapping[str, int]) -> float:
        return float(self.layers.predict(removed).get(self.metric))

    def saving(self, removed: Mapping[str, int], group: str, extra: int) -> float:
        return float(self.layers.saving(removed, group, extra).get(self.metric))


@COST_MODELS.register
@dataclass
class ParamsCost(_AnalyticCost):
    name = "params"
    description = "parameters (the file size)"
    metric: str = field(init=False, default="params")


@COST_MODELS.register
@dataclass
class MacsCost(_AnalyticCost):
    name = "macs"
    description = "multiply-accumulates of convs and linears (the arithmetic)"
    metric: str = field(init=False, default="macs")
