"""From per-weight scores to keep masks at a sparsity: per layer (`layer`, `erk`) or one threshold (`global`).

Masks only grow: a weight masked before stays masked (its score is taken as -inf), so gradual and
iterative methods never revive a weight they removed. `layer` scope gives every layer the same sparsity
(Zhu & Gupta's choice); `global` ranks all scores together, which lets layers with many redundant weights
give more, but compares raw scores across layers: with folded batch norm the weight scales of layers differ
by orders of magnitude, so magnitude scores are only comparable within a layer unless normalised. `erk`
(Erdős–Rényi-Kernel, Evci et al. 2020) keeps a share of each layer proportional to
(fan-in + fan-out + kernel) / (fan-in · fan-out · kernel), scaled to the overall sparsity: small layers,
whose every weight carries more, stay denser than large ones.
"""

from __future__ import annotations

import math

import torch

from .masks import WeightMasks

SCOPES = ("layer", "erk", "global")


def masks_at(
    scores: dict[str, torch.Tensor], sparsity: float, scope: str = "layer", previous: WeightMasks | None = None
) -> WeightMasks:
    """Keep masks zeroing the lowest-scored `sparsity` of each layer's weights (or of all of them)."""
    ranked = {}
    for name, score in scores.items():
        score = score.detach().float().clone()
        if previous is not None and name in previous.masks:
            score[~previous.masks[name].to(score.device)] = float("-inf")
        ranked[name] = score
    if scope in ("layer", "erk"):
        shares = layer_sparsities({name: tuple(score.shape) for name, score in ranked.items()}, sparsity, scope)
        return WeightMasks({name: _keep_top(score, shares[name]) for name, score in ranked.items()})
    if scope != "global":
        raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
    flat = torch.cat([s.flatten() for s in ranked.values()])
    drop = round(sparsity * flat.numel())
    if drop <= 0:
        return WeightMasks({name: torch.ones_like(s, dtype=torch.bool) for name, s in ranked.items()})
    order = flat.argsort(stable=True)
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    keep[order[:drop]] = False
    out, start = {}, 0
    for name, score in ranked.items():
        out[name] = keep[start : start + score.numel()].reshape(score.shape)
        start += score.numel()
    return WeightMasks(out)


def layer_sparsities(shapes: dict[str, tuple[int, ...]], sparsity: float, scope: str = "layer") -> dict[str, float]:
    """Each layer's sparsity: `sparsity` everywhere (`layer`), or ERK shares (`erk`) with the same total zeros."""
    if scope == "layer":
        return {name: sparsity for name in shapes}
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    raw = {name: sum(shape) / sizes[name] for name, shape in shapes.items()}  # ERK: (sum of dims) / product
    kept_total = (1 - sparsity) * sum(sizes.values())
    dense: set[str] = set()
    while True:  # layers whose ERK share would exceed 1 stay dense; the rest share what is left
        free = kept_total - sum(sizes[n] for n in dense)
        scale = free / max(sum(raw[n] * sizes[n] for n in shapes if n not in dense), 1e-12)
        over = {n for n in shapes if n not in dense and raw[n] * scale >= 1}
        if not over:
            break
        dense |= over
    return {name: 0.0 if name in dense else min(1.0, max(0.0, 1 - raw[name] * scale)) for name in shapes}


def _keep_top(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Exactly round(sparsity × n) of the lowest scores dropped (ties broken by position, reproducibly)."""
    flat = score.flatten()
    drop = round(sparsity * flat.numel())
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    if drop > 0:
        keep[flat.argsort(stable=True)[:drop]] = False
    return keep.reshape(score.shape)


def magnitude_scores(layers: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    return {name: m.weight.detach().abs() for name, m in layers.items()}
