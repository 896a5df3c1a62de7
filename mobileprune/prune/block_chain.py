"""A CNN's body as a chain of blocks, and what a forward pass through part of it gives.

Most CNNs run their body as a chain of blocks (an `nn.Sequential`, possibly nested: torchvision's
`features`, timm's `blocks`). Work that changes one layer at a time (reconstruction's re-fits, sensitivity's
probes) only needs the blocks from that layer on, given the input of its block as it was; re-running the
whole prefix for every layer makes it quadratic in depth. The users of this module never trust the chain
blindly: they check what it gives against a real forward pass on a couple of images, and fall back to
plain forward passes at the first mismatch (a skip connection around the chain, a model that does
something between blocks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn as nn

Blocks = list[tuple[str, nn.Module]]
CHECKED = 2  # images of the first batch on which what the chain gives is compared with a real forward pass


def agrees(through_chain: torch.Tensor, real: torch.Tensor) -> bool:
    """Whether a tensor computed through the chain (first CHECKED images) is the real forward's, to rounding."""
    return torch.allclose(through_chain[:CHECKED], real, rtol=1e-4, atol=1e-5)


class Stop(Exception):
    """Raised inside a forward hook: the rest of the network is not needed."""


def capture_input(model: nn.Module, name: str, x: torch.Tensor) -> tuple[torch.Tensor, nn.Module]:
    """The input of layer `name` for input `x`; the forward stops right there."""
    return _capture(model, name, x, output=False)


def capture_output(model: nn.Module, name: str, x: torch.Tensor) -> tuple[torch.Tensor, nn.Module]:
    """The output of layer `name` for input `x`; the forward stops right after it."""
    return _capture(model, name, x, output=True)


def _capture(model: nn.Module, name: str, x: torch.Tensor, output: bool) -> tuple[torch.Tensor, nn.Module]:
    layer = model.get_submodule(name)
    seen: list[torch.Tensor] = []

    def hook(module, args, y=None):
        seen.append(y if output else args[0])
        raise Stop

    handle = layer.register_forward_hook(hook) if output else layer.register_forward_pre_hook(hook)
    try:
        model(x)
    except Stop:
        pass
    finally:
        handle.remove()
    return seen[0], layer


def chain(model: nn.Module) -> Blocks:
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


def block_of(blocks: Blocks, name: str) -> int | None:
    """Index of the block that holds module `name` (None: outside the chain)."""
    for index, (block_name, _) in enumerate(blocks):
        if name == block_name or name.startswith(block_name + "."):
            return index
    return None


def segments(model: nn.Module, blocks: Blocks) -> Callable[[str], int | None]:
    """`segment(name)`: the index of the block holding module `name`, len(blocks) for a module registered
    after the chain (the classifier, say), None for one registered before it (a stem outside the chain)."""
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    begins = order[blocks[0][0]] if blocks else 0

    def segment(name: str) -> int | None:
        block = block_of(blocks, name)
        if block is not None:
            return block
        return None if order[name] < begins else len(blocks)

    return segment


class BlockInputs:
    """Each batch's input to one block of the chain at a time, moving forward through the blocks as they are
    when asked (so blocks already changed by the caller are run as changed); asking for an earlier block
    starts again from the model's input."""

    def __init__(self, model: nn.Module, blocks: Blocks, batches: Sequence[torch.Tensor]) -> None:
        self.model, self.blocks, self.batches = model, blocks, list(batches)
        self.block: int | None = None
        self.cached: list[torch.Tensor] = []

    @torch.no_grad()
    def at(self, block: int) -> list[torch.Tensor]:
        if self.block is None or block < self.block:
            self.cached = [capture_input(self.model, self.blocks[0][0], x)[0] for x in self.batches]
            self.block = 0
        while self.block < block:
            self.step()
        return self.cached

    @torch.no_grad()
    def step(self) -> None:
        """Run the current block on every batch: the cache holds the next block's inputs."""
        module = self.blocks[self.block][1]
        self.cached = [module(x) for x in self.cached]
        self.block += 1


class Replay(nn.Module):
    """Stands in for the blocks before a resumed block: returns `value` (that block's input), whatever it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.value: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value


@contextmanager
def resumed_at(model: nn.Module, blocks: Blocks, start: int) -> Iterator[Replay]:
    """Inside, `model(x)` skips the blocks before `start`: the first of them is a `Replay` (set its value to
    block `start`'s input for x before each call), the others pass it on. The modules are put back after."""
    replay = Replay()
    swapped = []
    for index, (name, module) in enumerate(blocks[:start]):
        parent, _, child = name.rpartition(".")
        holder = model.get_submodule(parent)
        swapped.append((holder, child, module))
        holder._modules[child] = replay if index == 0 else nn.Identity()
    try:
        yield replay
    finally:
        for holder, child, module in swapped:
            holder._modules[child] = module
