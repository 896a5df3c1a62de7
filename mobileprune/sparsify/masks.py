"""Weight masks: which weights of which layers are zero, kept as part of the model's state.

A mask is a boolean tensor per sparsified layer (True = the weight stays). `WeightMasks.apply` zeroes the
masked weights; `hold` keeps them exactly zero through training: their gradients are masked (so no
optimiser state builds up behind them) and the weights are zeroed again after every optimiser step (AdamW's
moments from before a mask grew would otherwise move them). Saved beside the weights as
`masks.safetensors` (artifacts/shrink_folder.py; uint8, pickle-free), so a reloaded model keeps its masks
for further sparsifying or retraining.

Which layers sparsify (`sparse_layers`): full convs and linears. The first conv reads the image (3 input
channels: few weights, every one of them matters, and XNNPACK's sparse path wants a dense 3×3 stem) and
depthwise convs (9 weights per channel, no sparse kernels in any mobile runtime) stay dense.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn


def sparse_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every conv and linear whose weights sparsify, in network order (the stem and depthwise convs excluded)."""
    layers: dict[str, nn.Module] = {}
    first_conv = True
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            stem, first_conv = first_conv, False
            if stem or module.groups > 1:
                continue
            layers[name] = module
        elif isinstance(module, nn.Linear):
            layers[name] = module
    return layers


def prunable_weights(model: nn.Module) -> int:
    """How many weights `sparse_layers` holds: the denominator of a sparsity."""
    return sum(m.weight.numel() for m in sparse_layers(model).values())


class WeightMasks:
    """Per-layer keep masks (True = kept) over `sparse_layers`; a layer without a mask is dense."""

    def __init__(self, masks: dict[str, torch.Tensor] | None = None):
        self.masks = {name: m.bool() for name, m in (masks or {}).items()}

    @classmethod
    def of_zeros(cls, model: nn.Module) -> WeightMasks:
        """The masks a model's exact zeros make: what a sparse model read without its mask file holds."""
        return cls({name: m.weight.detach() != 0 for name, m in sparse_layers(model).items()})

    def keep(self, name: str, module: nn.Module) -> torch.Tensor:
        mask = self.masks.get(name)
        return mask if mask is not None else torch.ones_like(module.weight, dtype=torch.bool)

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """Zero every masked weight."""
        for name, mask in self.masks.items():
            weight = model.get_submodule(name).weight
            weight.mul_(mask.to(weight.device, weight.dtype))

    def check_fits(self, model: nn.Module) -> str | None:
        """What is wrong with these masks for `model` (a layer it lacks, a shape it does not have), or None."""
        layers = sparse_layers(model)
        for name, mask in self.masks.items():
            if name not in layers:
                return f"a mask for '{name}', which is not a sparsifiable layer of the model"
            if tuple(mask.shape) != tuple(layers[name].weight.shape):
                return (
                    f"the mask of '{name}' has shape {list(mask.shape)}, its weight {list(layers[name].weight.shape)}"
                )
        return None


def sparsity_of(model: nn.Module) -> float:
    """Zeros among the weights of `sparse_layers`."""
    layers = sparse_layers(model).values()
    zeros = sum(int((m.weight == 0).sum()) for m in layers)
    return zeros / max(sum(m.weight.numel() for m in layers), 1)


class MaskHold:
    """Keeps masked weights at zero through training: a `StepRegulariser` for `Trainer.train`.

    `masks` may be replaced while training (gradual pruning grows them); the gradient hooks read the
    current ones.
    """

    def __init__(self, model: nn.Module, masks: WeightMasks):
        self.model = model
        self.masks = masks
        self.handles = []
        for name in sparse_layers(model):
            weight = model.get_submodule(name).weight
            self.handles.append(weight.register_hook(self._grad_hook(name)))

    def _grad_hook(self, name: str):
        def hook(grad: torch.Tensor) -> torch.Tensor:
            mask = self.masks.masks.get(name)
            return grad if mask is None else grad * mask.to(grad.device, grad.dtype)

        return hook

    def zero_grad(self) -> None:
        """Nothing to clear: masks are not trained."""

    def step(self) -> None:
        self.masks.apply(self.model)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


@contextmanager
def held(model: nn.Module, masks: WeightMasks) -> Iterator[MaskHold]:
    """`MaskHold` for a block: `with held(model, masks) as hold: trainer.train(..., regulariser=hold)`."""
    masks.apply(model)
    hold = MaskHold(model, masks)
    try:
        yield hold
    finally:
        hold.remove()
