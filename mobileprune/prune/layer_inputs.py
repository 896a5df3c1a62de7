"""The inputs of one layer after another, for a fixed set of batches, without re-running the network's prefix.

Reconstruction re-fits layers in network order, and each fit needs the layer's inputs in the network as it
is *now* (earlier layers already re-fitted). Caching each batch's input to the current block of the chain
(block_chain.py) makes every layer cost one partial block instead of a prefix: linear in depth. Every
layer's inputs computed through the chain are checked, on two images, against a real forward pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn as nn

from .block_chain import CHECKED, BlockInputs, agrees, block_of, capture_input, chain


class LayerInputs:
    """`of(name)`: the inputs of layer `name` for every batch, asked for in network order.

    Holds the current block's input for every batch (memory: one activation map per image).
    """

    def __init__(self, model: nn.Module, batches: Sequence[torch.Tensor]) -> None:
        self.model = model
        self.batches = list(batches)
        self.blocks = chain(model)
        self.inputs = BlockInputs(model, self.blocks, self.batches)
        self.trusted = bool(self.blocks)

    @torch.no_grad()
    def of(self, name: str) -> Iterator[torch.Tensor]:
        """Each batch's input to layer `name`, one at a time (consume them before re-fitting anything)."""
        block = block_of(self.blocks, name)
        if not self.trusted or block is None:
            yield from (capture_input(self.model, name, x)[0] for x in self.batches)
            return
        cached = self.inputs.at(block)
        block_name, module = self.blocks[block]
        inside = name[len(block_name) + 1 :]
        first = _within(module, inside, cached[0])
        real = capture_input(self.model, name, self.batches[0][:CHECKED])[0]
        if not agrees(first, real):
            self.trusted = False  # the chain is not how the model runs: plain forward passes from now on
            yield from (capture_input(self.model, name, x)[0] for x in self.batches)
            return
        yield first
        yield from (_within(module, inside, x) for x in cached[1:])


def _within(block: nn.Module, inside: str, x: torch.Tensor) -> torch.Tensor:
    """The input of module `inside` of `block` (the block's own input when `inside` is empty)."""
    return capture_input(block, inside, x)[0] if inside else x
