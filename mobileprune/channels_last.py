"""Channels-last weights while the CPU runs the heavy forward passes (probes, re-fits, evaluation, retraining).

PyTorch's CPU convolutions (oneDNN) are much faster when the weights are channels-last (NHWC), and a conv
whose weight is channels-last gives channels-last outputs, so the whole network follows from the weights.
The layout changes strides, never values, so the rest of mobileprune does not notice; what does break is a
`.view()` on a tensor whose strides it cannot reinterpret (a feature map flattened by `x.view(n, -1)`, as
older models do), so the layout is tried on one example first and kept only where the model runs with it
and agrees with itself.

The weights go back to the standard layout on exit: exporters and safetensors expect it, and timing
must see the model as a user would export it. Nested uses are free: an inner context on a model already
switched does nothing.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator

import torch
import torch.nn as nn

_switched: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # models inside a context right now


@contextlib.contextmanager
def channels_last(example: torch.Tensor, *models: nn.Module) -> Iterator[None]:
    """Run `models` channels-last meanwhile, where each runs so on `example` (an NCHW batch; its first
    image is used) and gives the same output; on a CUDA device or without 4-D convs, nothing changes."""
    switched = []
    try:
        for model in models:
            if model not in _switched and _worth_it(model, example) and _runs_channels_last(model, example[:1]):
                _switched.add(model)
                switched.append(model)
        yield
    finally:
        for model in switched:
            model.to(memory_format=torch.contiguous_format)
            _switched.discard(model)


def _worth_it(model: nn.Module, example: torch.Tensor) -> bool:
    if example.dim() != 4 or example.device.type != "cpu":
        return False
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


@torch.no_grad()
def _runs_channels_last(model: nn.Module, x: torch.Tensor) -> bool:
    """Switch `model` to channels-last if its output on `x` is the same (to rounding); otherwise leave it."""
    training = {m: m.training for m in model.modules()}  # per module: a trainer's frozen batch norm stays frozen
    model.eval()
    try:
        plain = model(x)
        model.to(memory_format=torch.channels_last)
        try:
            fast = model(x)
        except RuntimeError:  # a view its strides do not allow
            fast = None
        same = (
            isinstance(plain, torch.Tensor)
            and isinstance(fast, torch.Tensor)
            and fast.shape == plain.shape
            and torch.allclose(fast, plain, rtol=1e-3, atol=1e-4 * float(plain.abs().max().clamp_min(1.0)))
        )
        if not same:
            model.to(memory_format=torch.contiguous_format)
        return same
    finally:
        for m, mode in training.items():
            m.training = mode
