"""The network's outputs on fixed batches when only the blocks from some point on behave differently.

A sensitivity probe masks one group's channels at its consumers; every block before the first consumer
computes what it always does. Each batch's input to that block is cached (in the unprobed network), and the
probe runs only the blocks from there on (block_chain.py): probes of late groups cost a fraction of a
forward pass. Groups must be asked for in order of their first block, so the cache only moves forward.
Every probe's outputs are checked on two images against a real forward pass; at the first mismatch the
chain is abandoned for plain forward passes. Sensitivity, the greedy schedule's measured steps and the ucb
criterion's pulls all probe this way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn as nn

from .block_chain import CHECKED, BlockInputs, agrees, chain, resumed_at, segments


class SuffixForward:
    """`outputs(start)`: the model's outputs on `batches`, computed from the cached inputs of block `start`
    (valid while nothing before that block differs from when the cache was filled)."""

    def __init__(self, model: nn.Module, batches: Sequence[torch.Tensor]) -> None:
        self.model = model
        self.batches = list(batches)
        self.blocks = chain(model)
        self.inputs = BlockInputs(model, self.blocks, batches)
        self.trusted = bool(self.blocks)
        self.segment = segments(model, self.blocks)

    def start(self, modules: Iterable[str]) -> int:
        """The first block any of `modules` is in (len(blocks): all after the chain); 0 when one of them runs
        before the chain."""
        found = [self.segment(name) for name in modules]
        return 0 if None in found else min(found, default=len(self.blocks))

    @torch.no_grad()
    def outputs(self, start: int, batch: int | None = None) -> list[torch.Tensor]:
        """The outputs for every batch, or only for batch index `batch` (a one-element list)."""
        chosen = range(len(self.batches)) if batch is None else [batch]
        if not self.trusted or start == 0:
            return [self.model(self.batches[b]) for b in chosen]
        cached_inputs = self.inputs.at(start)  # start == len(blocks): the chain's outputs
        with resumed_at(self.model, self.blocks, start) as replay:
            outputs = []
            for b in chosen:
                replay.value = cached_inputs[b]
                outputs.append(self.model(self.batches[b]))
        real = self.model(self.batches[chosen[0]][:CHECKED])
        if not agrees(outputs[0], real):
            self.trusted = False  # the chain is not how the model runs: plain forward passes from now on
            return [self.model(self.batches[b]) for b in chosen]
        return outputs
