"""The inputs of one layer after another, for a fixed set of batches, without re-running the network's prefix.

Reconstruction re-fits layers in network order, and each fit needs the layer's inputs in the network as it
is *now* (earlier layers already re-fitted). Caching each batch's input to the current block of the chain
(block_chain.py) makes every layer cost one partial block instead of a prefix: linear in depth. Every
layer's inputs computed through the chain are checked, on two images, against a real forward pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn as nn

from .block_chain import (
    CHECKED,
    BlockInputs,
    Stop,
    agrees,
    block_of,
    capture_input,
    capture_output,
    chain,
    resumed_at,
    segments,
)


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
    def of(self, name: str, output: bool = False) -> Iterator[torch.Tensor]:
        """Each batch's input to layer `name` (its output with `output`), one at a time (consume them before
        re-fitting anything)."""
        capture = capture_output if output else capture_input
        block = block_of(self.blocks, name)
        if not self.trusted or block is None:
            yield from (capture(self.model, name, x)[0] for x in self.batches)
            return
        cached = self.inputs.at(block)
        block_name, module = self.blocks[block]
        inside = name[len(block_name) + 1 :]
        first = _within(module, inside, cached[0], output)
        real = capture(self.model, name, self.batches[0][:CHECKED])[0]
        if not agrees(first, real):
            self.trusted = False  # the chain is not how the model runs: plain forward passes from now on
            yield from (capture(self.model, name, x)[0] for x in self.batches)
            return
        yield first
        yield from (_within(module, inside, x, output) for x in cached[1:])


def _within(block: nn.Module, inside: str, x: torch.Tensor, output: bool) -> torch.Tensor:
    """The input (or output) of module `inside` of `block` (the block itself when `inside` is empty)."""
    if output:
        return capture_output(block, inside, x)[0] if inside else block(x)
    return capture_input(block, inside, x)[0] if inside else x


class LayerOutputs:
    """`of(name)`: what `keep(name, batch, output)` makes of layer `name`'s output for every batch, in a model
    that does not change (the unpruned reference). One pass of a block serves all the listed layers in it
    (and one pass of the network after the chain, resumed from the chain's output, all layers there);
    `keep` should shrink the output (reconstruction samples positions), since a segment's layers are held
    until asked for. Each segment is checked on two images against a real forward pass."""

    def __init__(
        self,
        model: nn.Module,
        batches: Sequence[torch.Tensor],
        layers: Sequence[str],
        keep: Callable[[str, int, torch.Tensor], torch.Tensor],
    ) -> None:
        self.model, self.batches, self.layers, self.keep = model, list(batches), list(layers), keep
        self.blocks = chain(model)
        self.inputs = BlockInputs(model, self.blocks, self.batches)
        self.trusted = bool(self.blocks)
        self.ready: dict[str, list[torch.Tensor]] = {}
        self._segment = segments(model, self.blocks)

    @torch.no_grad()
    def of(self, name: str) -> list[torch.Tensor]:
        if name not in self.ready:
            segment = self._segment(name)
            if self.trusted and segment is not None:
                self.ready = self._through(segment)
            if name not in self.ready:
                self.ready = self._kept(lambda: [self.model(x) for x in self.batches], [name])
        return self.ready.pop(name)

    def _through(self, segment: int) -> dict[str, list[torch.Tensor]]:
        members = [name for name in self.layers if self._segment(name) == segment]
        cached = self.inputs.at(segment)  # segment == len(blocks): the chain's outputs
        tail = segment == len(self.blocks)

        def resumed(inputs: list[torch.Tensor], batches: list[torch.Tensor]) -> None:
            with resumed_at(self.model, self.blocks, segment) as replay:
                for value, x in zip(inputs, batches, strict=True):
                    replay.value = value
                    self.model(x)

        few = [self.batches[0][:CHECKED]]
        if tail:
            first = self._kept(lambda: resumed([cached[0][:CHECKED]], few), members, raw=True)
        else:
            first = self._kept(lambda: self.blocks[segment][1](cached[0][:CHECKED]), members, raw=True)
        real = self._kept(lambda: self.model(few[0]), members, raw=True)
        if any(not agrees(first[name][0], real[name][0]) for name in members):
            self.trusted = False  # the chain is not how the model runs: whole forward passes from now on
            return {}
        if tail:
            return self._kept(lambda: resumed(cached, self.batches), members)
        return self._kept(self.inputs.step, members)  # the block's pass also gives the next block its inputs

    def _kept(self, run: Callable[[], object], names: list[str], raw: bool = False) -> dict[str, list[torch.Tensor]]:
        """`run()` with hooks on `names` storing, batch after batch, what `keep` makes of their outputs (or the
        outputs themselves with `raw`, stopping the pass once every one has been seen)."""
        stored: dict[str, list[torch.Tensor]] = {name: [] for name in names}

        def make_hook(name: str):
            def hook(module, args, y):
                stored[name].append(y if raw else self.keep(name, len(stored[name]), y))
                if raw and all(stored.values()):  # a check: the rest of the network is not needed
                    raise Stop

            return hook

        handles = [self.model.get_submodule(name).register_forward_hook(make_hook(name)) for name in names]
        try:
            with contextlib.suppress(Stop):
                run()
        finally:
            for h in handles:
                h.remove()
        return stored
