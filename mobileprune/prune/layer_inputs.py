"""The inputs of one layer after another, for a fixed set of batches, without re-running the network's prefix.

Reconstruction re-fits layers in network order, and each fit needs the layer's inputs in the network as it
is *now* (earlier layers already re-fitted). Capturing them with a forward pass that stops at the layer
re-runs the whole prefix for every layer: quadratic in depth, and most of reconstruction's time on a CPU.

Most CNNs run their body as a chain of blocks (an `nn.Sequential`, possibly nested: torchvision's
`features`, timm's `blocks`). Caching each batch's input to the current block makes every layer cost one
partial block instead of a prefix: linear in depth. Nothing about the model's forward is assumed: every
layer's inputs computed through the chain are checked, on the first batch, against a real forward pass;
at the first mismatch (a skip connection around the chain, a model that does something between blocks)
the chain is abandoned for plain forward passes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn as nn


class _Stop(Exception):
    """Raised inside a forward hook: the rest of the network is not needed."""


def capture_input(model: nn.Module, name: str, x: torch.Tensor) -> tuple[torch.Tensor, nn.Module]:
    """The input of layer `name` for input `x`; the forward stops right there."""
    layer = model.get_submodule(name)
    seen: list[torch.Tensor] = []

    def hook(module, args):
        seen.append(args[0])
        raise _Stop

    handle = layer.register_forward_pre_hook(hook)
    try:
        model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    return seen[0], layer


def chain(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The longest run of blocks the model calls one after another: the `nn.Sequential` holding the most
    modules, its nested `nn.Sequential`s flattened into their children."""
    candidates = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Sequential) and name]
    if not candidates:
        return []
    name, sequential = max(candidates, key=lambda c: sum(1 for _ in c[1].modules()))
    return list(_flatten(name, sequential))


def _flatten(prefix: str, sequential: nn.Sequential):
    for child_name, child in sequential.named_children():
        name = f"{prefix}.{child_name}"
        if isinstance(child, nn.Sequential):
            yield from _flatten(name, child)
        else:
            yield name, child


CHECKED = 2  # images of the first batch whose inputs are checked against a real forward pass, for every layer


class LayerInputs:
    """`of(name)`: the inputs of layer `name` for every batch, asked for in network order.

    Holds the current block's input for every batch (memory: one activation map per image).
    """

    def __init__(self, model: nn.Module, batches: Sequence[torch.Tensor]) -> None:
        self.model = model
        self.batches = list(batches)
        self.blocks = chain(model)
        self.block: int | None = None  # index of the block whose inputs `cached` holds
        self.cached: list[torch.Tensor] = []
        self.trusted = bool(self.blocks)

    @torch.no_grad()
    def of(self, name: str) -> Iterator[torch.Tensor]:
        """Each batch's input to layer `name`, one at a time (consume them before re-fitting anything)."""
        block = self._block_of(name)
        if not self.trusted or block is None:
            yield from (capture_input(self.model, name, x)[0] for x in self.batches)
            return
        self._advance_to(block)
        block_name, module = self.blocks[block]
        inside = name[len(block_name) + 1 :]
        first = self._within(module, inside, 0)
        real = capture_input(self.model, name, self.batches[0][:CHECKED])[0]
        if not torch.allclose(first[:CHECKED], real, rtol=1e-4, atol=1e-5):
            self.trusted = False  # the chain is not how the model runs: plain forward passes from now on
            yield from (capture_input(self.model, name, x)[0] for x in self.batches)
            return
        yield first
        yield from (self._within(module, inside, b) for b in range(1, len(self.batches)))

    def _within(self, block: nn.Module, inside: str, batch: int) -> torch.Tensor:
        x = self.cached[batch]
        return capture_input(block, inside, x)[0] if inside else x

    def _block_of(self, name: str) -> int | None:
        for index, (block_name, _) in enumerate(self.blocks):
            if name == block_name or name.startswith(block_name + "."):
                return index
        return None

    @torch.no_grad()
    def _advance_to(self, block: int) -> None:
        """Run the cached inputs through the blocks before `block` (as they are now: already re-fitted)."""
        if self.block is None or block < self.block:
            first = self.blocks[0][0]
            self.cached = [capture_input(self.model, first, x)[0] for x in self.batches]
            self.block = 0
        while self.block < block:
            module = self.blocks[self.block][1]
            self.cached = [module(x) for x in self.cached]
            self.block += 1
