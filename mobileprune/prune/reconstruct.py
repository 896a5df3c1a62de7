"""Reconstruction: after pruning, re-fit each consumer's remaining weights so its output matches the original.

When a conv (or linear) loses input channels, what those channels contributed is gone; much of it can be
re-expressed through the channels that remain, because activations are correlated. Layer by layer in
network order (ThiNet, Luo et al. 2017; He et al. 2017), each consumer's weights W and bias b are re-fit by
ridge-regularised least squares on calibration images:

    min_W  ||W X_pruned + b - Y_original||²  +  λ ||W - W_now||²

with X_pruned the layer's inputs in the pruned network (so errors of earlier layers are corrected too) and
Y_original the same layer's outputs in the unpruned one. The ridge pulls towards the current weights, so the
fit can only lower the calibration error, and changes nothing where nothing was removed. No labels, no
backpropagation. Both networks run block by block (layer_inputs.py): the pruned one as its layers are
re-fitted, the unpruned one once, each layer's sampled outputs taken when its block runs, so memory holds
one block's activations and one layer's samples rather than every layer's targets at once.

Only dense consumers are re-fitted (1×1 and full convs, linears); depthwise convs have one input channel
per output and lose their outputs along with their inputs.

The last layer of a residual block is fitted to the block's output rather than its own (`through_skips`,
skip_connections.py): the block adds its pruned input, which carries every earlier block's error, and a
layer matched only to its own output would leave that error in the sum for the next blocks to inherit.

A linear after global average pooling (a classifier) sees one sample per image, and fitted on those it
learns the calibration images by heart. It is fitted at the positions of the map before pooling instead,
to the original linear applied there: a fit that matches every position matches their average too, and
the positions give it dozens of samples per image (the same statistics compensated probes assume).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..channels_last import channels_last
from .global_pooling import pooled_maps
from .graph import PruningGraph, is_depthwise
from .layer_inputs import LayerInputs, LayerOutputs
from .moments import cross_moments
from .skip_connections import skip_blocks


@dataclass(frozen=True)
class LayerFit:
    layer: str
    error_before: float  # relative squared error of the layer's output on the calibration samples
    error_after: float

    def to_json(self) -> dict:
        return {
            "layer": self.layer,
            "error_before": round(self.error_before, 5),
            "error_after": round(self.error_after, 5),
        }


def consumers(graph: PruningGraph, groups: Sequence[str]) -> list[str]:
    """Dense layers that read the channels of `groups`, in network order."""
    names = set()
    for name in groups:
        for member in graph.group(name).members:
            module = graph.model.get_submodule(member.module)
            if member.side == "in" and _refittable(module):
                names.add(member.module)
    order = {n: i for i, (n, _) in enumerate(graph.model.named_modules())}
    return sorted(names, key=order.__getitem__)


def refittable_layers(model: nn.Module) -> list[str]:
    """Every dense conv and linear in network order, except a first layer fed by the image (never changed)."""
    names = [name for name, m in model.named_modules() if _refittable(m)]
    return names[1:] if names else names


def _refittable(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return isinstance(module, nn.Conv2d) and module.groups == 1 and not is_depthwise(module)


@torch.no_grad()
def reconstruct(
    pruned: nn.Module,
    original: nn.Module,
    layers: Sequence[str],
    batches: Sequence[torch.Tensor],
    kept_outputs: Callable[[str], list[int] | None] = lambda layer: None,
    positions: int = 64,
    ridge: float | None = None,
    progress: Callable[[], None] | None = None,
    through_skips: bool = True,
) -> list[LayerFit]:
    """Re-fit `layers` of `pruned` (in order) to reproduce `original`'s outputs on `batches`.

    `ridge` fixes the regularisation strength; by default each layer chooses its own on held-out samples.
    `positions` output positions are sampled per image: at 64, a 7×7 map (the last stage of a 224-px mobile
    net, whose layers are the widest) is sampled whole.

    `kept_outputs(layer)` gives the original indices of a layer's remaining outputs when they were pruned
    too (a consumer that is also a producer): those outputs of the original layer are the targets.
    With `through_skips`, a residual block's last layer is fitted to the block's output (module docstring);
    its fit's errors are then relative to that target.
    """
    pruned.eval()
    original.eval()
    with channels_last(batches[0], pruned, original):  # the fits' forward passes, at CPU speed
        pooled = pooled_maps(original, layers, batches[0][:2])
        sampled = list(dict.fromkeys(pooled.get(name, name) for name in layers))  # a pooled linear: its map
        picks = _positions(original, sampled, batches, positions)
        skips = skip_blocks(original, layers, batches[0]) if through_skips else {}
        for skip in skips.values():
            picks[skip.block] = picks[skip.layer]  # the block's output at its last layer's positions
        fits = []
        inputs = LayerInputs(pruned, batches)
        targets = LayerOutputs(
            original,
            batches,
            sampled + [skip.block for skip in skips.values()],
            lambda name, b, y: _sampled(y, picks[name][b]),
        )
        for name in layers:
            layer = pruned.get_submodule(name)
            if name in pooled:
                source = pooled[name]
                head = original.get_submodule(name)
                target = F.linear(torch.cat(targets.of(source)), head.weight.float(), _float(head.bias))
                maps = inputs.of(source, output=True)
                rows = torch.cat([_sampled(y, picks[source][b]) for b, y in enumerate(maps)])
            else:
                target = torch.cat(targets.of(name))
                rows = torch.cat([_inputs_at(layer, inp, picks[name][b]) for b, inp in enumerate(inputs.of(name))])
            kept = kept_outputs(name)
            if kept is not None:
                target = target[:, kept]
            if name in skips:
                skip = skips[name]
                block_output = torch.cat(targets.of(skip.block))
                block_input = torch.cat([_sampled(x, picks[name][b]) for b, x in enumerate(inputs.of(skip.block))])
                target = skip.target(target, block_output, block_input, kept)
            fits.append(_refit(name, layer, rows, target, ridge))
            if progress:
                progress()
        return fits


def _float(bias: torch.Tensor | None) -> torch.Tensor | None:
    return None if bias is None else bias.float()


def _positions(
    original: nn.Module, layers: Sequence[str], batches: Sequence[torch.Tensor], positions: int
) -> dict[str, list[torch.Tensor | None]]:
    """The output positions each conv is fitted at, per batch and image (None for a linear: every row)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def make_hook(name: str):
        def hook(module, args, y):
            shapes.setdefault(name, tuple(y.shape[2:]) if y.dim() == 4 else ())

        return hook

    handles = [original.get_submodule(name).register_forward_hook(make_hook(name)) for name in layers]
    try:
        original(batches[0][:1])
    finally:
        for h in handles:
            h.remove()
    generator = torch.Generator().manual_seed(0)
    picks: dict[str, list[torch.Tensor | None]] = {name: [] for name in layers}
    for x in batches:
        for name in shapes:  # the order the layers run in
            if not shapes[name]:
                picks[name].append(None)
                continue
            h, w = shapes[name]
            count = min(positions, h * w)
            pick = torch.stack([torch.randperm(h * w, generator=generator)[:count] for _ in range(len(x))])
            picks[name].append(pick.to(x.device))
    return picks


def _sampled(y: torch.Tensor, pick: torch.Tensor | None) -> torch.Tensor:
    """A layer's output `y` at the sampled positions (samples × out features)."""
    if pick is None:
        return y.reshape(-1, y.shape[-1]).float()
    n, c, h, w = y.shape
    flat = y.reshape(n, c, h * w)
    return torch.gather(flat, 2, pick[:, None, :].expand(n, c, pick.shape[1])).permute(0, 2, 1).reshape(-1, c).float()


def _inputs_at(layer: nn.Module, inp: torch.Tensor, pick: torch.Tensor | None) -> torch.Tensor:
    """The layer's input `inp` at the sampled output positions (samples × in features·kernel)."""
    if isinstance(layer, nn.Linear):
        return inp.reshape(-1, inp.shape[-1]).float()
    cols = F.unfold(inp, layer.kernel_size, layer.dilation, layer.padding, layer.stride)  # n × (c·k) × positions
    n, features, _ = cols.shape
    count = pick.shape[1]
    return (
        torch.gather(cols, 2, pick[:, None, :].expand(n, features, count))
        .permute(0, 2, 1)
        .reshape(-1, features)
        .float()
    )


def _refit(name: str, layer: nn.Module, x: torch.Tensor, y: torch.Tensor, ridge: float | None) -> LayerFit:
    """Ridge least squares towards the current weights; bias included as a constant input feature.

    The ridge strength is chosen per layer on a held-out fifth of the samples (unless given), so a layer
    with few samples per weight (a classifier after global pooling) is not fitted to noise. Everything is
    solved for the change to the current weights, from the residual of the current ones: one product
    with the (large) design matrix for the residual, one for the fit's error, and the held-out fifth's
    normal equations are subtracted from the whole set's rather than the other four fifths copied out.
    """
    weight = layer.weight.detach().reshape(layer.weight.shape[0], -1).float()  # out × in·k
    bias = layer.bias.detach().float() if layer.bias is not None else None
    design = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)], 1) if bias is not None else x
    current = torch.cat([weight, bias[:, None]], 1) if bias is not None else weight
    norm = max(_energy(y), 1e-12)
    residual = y - design @ current.T
    before = _energy(residual) / norm
    if before < EXACT:  # the layer already reproduces the original: nothing of its inputs was lost
        return LayerFit(name, before, before)
    gram, rhs = cross_moments(design, design), cross_moments(design, residual)  # float64 (moments.py)
    if ridge is None:
        held = _held_out(design.shape[0], design.device)
        held_design, held_residual = design[held], residual[held]
        held_gram, held_rhs = cross_moments(held_design, held_design), cross_moments(held_design, held_residual)
        ridge = _choose_ridge(gram - held_gram, rhs - held_rhs, held_design, held_residual)
    change = _solve(gram, rhs, ridge)
    after = _energy(residual - design @ change.T.float()) / norm
    if after > before:  # cannot happen for a ridge towards the current weights; keep them if rounding says so
        return LayerFit(name, before, before)
    fitted = current.double() + change
    new_weight = fitted[:, : weight.shape[1]] if bias is not None else fitted
    layer.weight.copy_(new_weight.reshape(layer.weight.shape).to(layer.weight.dtype))
    if bias is not None:
        layer.bias.copy_(fitted[:, -1].to(layer.bias.dtype))
    return LayerFit(name, before, after)


EXACT = 1e-9  # relative squared error below which a layer's output is the original's up to float32 rounding
RIDGES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def _energy(x: torch.Tensor) -> float:
    """Sum of squares (torch's float32 sum is pairwise: relative rounding near 1e-7 at these sizes)."""
    return float(x.pow(2).sum())


def _held_out(samples: int, device: torch.device) -> torch.Tensor:
    """A seeded fifth of the samples, on which the ridge strength is chosen."""
    held = torch.zeros(samples, dtype=torch.bool)
    held[torch.randperm(samples, generator=torch.Generator().manual_seed(0))[: samples // 5]] = True
    return held.to(device)


def _choose_ridge(
    gram: torch.Tensor, rhs: torch.Tensor, held_design: torch.Tensor, held_residual: torch.Tensor
) -> float:
    """The ridge (relative to the mean input energy) with the lowest error on the held-out samples, each
    candidate fitted on the other samples' normal equations (`gram`, `rhs`)."""
    errors = []
    for strength in RIDGES:
        change = _solve(gram, rhs, strength)
        errors.append(_energy(held_residual - held_design @ change.T.float()))
    return RIDGES[min(range(len(RIDGES)), key=errors.__getitem__)]


def _solve(gram: torch.Tensor, rhs: torch.Tensor, strength: float) -> torch.Tensor:
    """argmin_D ||design D^T - residual||² + λ ||D||²: the change to the current weights, with
    gram = design^T design, rhs = design^T residual and λ = strength x mean diagonal of the gram."""
    scale = float(gram.diagonal().mean()) or 1.0
    damped = gram + strength * scale * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return torch.linalg.solve(damped, rhs).T
