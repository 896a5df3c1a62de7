"""Blocks with an identity skip connection, and how their last layer's output enters the block's sum.

An inverted residual (or any residual) block computes x + post(L(h)): its input plus an affine per-channel
map (a batch norm in eval mode, or nothing) of its last layer L. After pruning, the block input x carries
the error of every block before it, and a re-fit of L to L's own original output leaves that error in the
sum, so it accumulates down the residual stream. Re-fitted to `(original block output − pruned x − shift)
/ scale` instead, L matches the block's *output* and cancels what of the stream's error its inputs can
predict (the block's hidden channels are computed from that same x).

Nothing is assumed from class names: a block of the chain qualifies when, on a batch of images, its
output minus its input is an affine per-channel function of L's output (fitted, then checked to rounding;
a map too small to tell, fewer than AFFINE_SAMPLES values per channel, does not qualify).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .block_chain import BlockInputs, capture_output, chain

AFFINE_TOLERANCE = 1e-6  # relative squared residual of the affine check: float32 rounding, not a structure
AFFINE_SAMPLES = 8  # per channel, at least: two points fit any affine map (a 1×1 map of two images would pass)
SMALL_SCALE = 1e-6  # relative to the block's largest |scale|: a channel L cannot move is left as it is


@dataclass(frozen=True)
class SkipBlock:
    """Block `block` returns its input plus `scale` · (output of `layer`) + `shift`, per channel."""

    block: str
    layer: str
    scale: torch.Tensor  # per output channel of the unpruned block
    shift: torch.Tensor

    def target(
        self,
        layer_output: torch.Tensor,
        block_output: torch.Tensor,
        block_input: torch.Tensor,
        kept: list[int] | None,
    ) -> torch.Tensor:
        """`layer`'s re-fit target (samples × kept channels): what it should output for the block to give the
        unpruned model's `block_output` (samples × all channels) from its pruned input `block_input`
        (samples × kept). On channels the block scales to about zero, the layer's own original output
        (`layer_output`, samples × kept) stays the target."""
        scale, shift = (self.scale, self.shift) if kept is None else (self.scale[kept], self.shift[kept])
        wanted = block_output if kept is None else block_output[:, kept]
        movable = scale.abs() > SMALL_SCALE * float(self.scale.abs().max())
        through = (wanted - block_input - shift) / torch.where(movable, scale, torch.ones_like(scale))
        return torch.where(movable, through, layer_output)


@torch.no_grad()
def skip_blocks(model: nn.Module, layers: Sequence[str], example: torch.Tensor) -> dict[str, SkipBlock]:
    """The blocks of `model`'s chain that add their input to an affine map of their last layer in `layers`,
    keyed by that layer, checked on `example` (a batch of real inputs, the more images the smaller the maps
    that can be told apart)."""
    found: dict[str, SkipBlock] = {}
    wanted = set(layers)
    blocks = chain(model)
    inputs = BlockInputs(model, blocks, [example])  # one pass down the chain, not a prefix per block
    for index, (block_name, block) in enumerate(blocks):
        inside = [name for name, _ in block.named_modules(prefix=block_name) if name in wanted]
        if not inside:
            continue
        last = inside[-1]
        x = inputs.at(index)[0]  # any input shows the arithmetic; the chain need not be the real forward
        out = block(x)
        if out.shape != x.shape or out[:, 0].numel() < AFFINE_SAMPLES:
            continue
        z = capture_output(block, last[len(block_name) + 1 :], x)[0]
        if z.shape != out.shape:
            continue
        fitted = _affine_per_channel(z, out - x)
        if fitted is not None:
            found[last] = SkipBlock(block_name, last, *fitted)
    return found


def _affine_per_channel(z: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(scale, shift) with d = scale · z + shift per channel (n × c × h × w), or None if no such map fits."""
    zs = z.transpose(0, 1).reshape(z.shape[1], -1).double()
    ds = d.transpose(0, 1).reshape(d.shape[1], -1).double()
    z_mean, d_mean = zs.mean(1, keepdim=True), ds.mean(1, keepdim=True)
    zc, dc = zs - z_mean, ds - d_mean
    variance = zc.pow(2).sum(1)
    scale = torch.where(variance > 0, (zc * dc).sum(1) / variance.clamp_min(1e-300), torch.zeros_like(variance))
    shift = d_mean[:, 0] - scale * z_mean[:, 0]
    residual = (ds - scale[:, None] * zs - shift[:, None]).pow(2).sum()
    if float(residual) > AFFINE_TOLERANCE * max(float(ds.pow(2).sum()), 1e-30):
        return None
    return scale.float(), shift.float()
