"""A linear after global average pooling, and the map it averages.

A classifier after global pooling sees one vector per image, too few samples for statistics over its
1000+ input channels. The map before pooling has dozens of positions per image, and whatever is linear in
the classifier's input (a prediction of some channels from others, a re-fitted weight) fitted at those
positions holds for their average too. Compensated probes and reconstruction both use the map instead.
The map is found numerically, not by architecture: the module whose output, averaged over positions, is
the linear's input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from .block_chain import capture_input


def pooled_maps(model: nn.Module, layers: Sequence[str], x: torch.Tensor) -> dict[str, str]:
    """For each of `layers` that is a linear fed by global average pooling, the module giving the map it
    averages (checked on input `x`, a couple of images)."""
    return {name: source for name in layers if (source := pooled_from(model, name, x)) is not None}


@torch.no_grad()
def pooled_from(model: nn.Module, layer: str, x: torch.Tensor) -> str | None:
    """The module whose output map, averaged over its positions, is linear `layer`'s input on `x` (the map
    before global average pooling), or None when `layer` is not a linear fed that way."""
    if not isinstance(model.get_submodule(layer), nn.Linear):
        return None
    maps: list[tuple[str, torch.Tensor]] = []

    def record(name: str):
        def hook(module, args, y):
            if isinstance(y, torch.Tensor) and y.dim() == 4 and y.shape[2] * y.shape[3] > 1:
                maps.append((name, y.detach().mean((2, 3))))

        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in model.named_modules() if n]
    try:
        pooled = capture_input(model, layer, x)[0].detach()
    finally:
        for h in handles:
            h.remove()
    pooled = pooled.reshape(-1, pooled.shape[-1])
    tolerance = 1e-5 * float(pooled.abs().max())  # relative to the map's scale: near-zero maps all look alike
    for name, mean in maps:  # the innermost module giving that map (its containers finish after it)
        if mean.shape == pooled.shape and torch.allclose(mean, pooled, rtol=1e-4, atol=tolerance):
            return name
    return None
