"""The anchors every accuracy claim is measured against: Torch-Pruning's own recipes and width scaling.

Each prunes a copy of the model to a MAC ratio (or a predicted latency ratio) with torch-pruning's
`MetaPruner` exactly as its README does (uniform L1 `GroupMagnitudeImportance`; global
`GroupTaylorImportance`; global `LAMPImportance`), the pruning ratio found by bisection so the MACs (or
the prediction) land on the target; width scaling keeps the first channels
of every layer in the same uniform ratio (what a width-multiplied network initialised from the pretrained
one would be). None of them gets mobileprune's allocation, reconstruction or criteria; all get the same
recovery loop afterwards.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_pruning as tp

from mobileprune.prune.cost import count_cost
from mobileprune.prune.graph import record_kept_outputs


def torch_pruning(
    model: nn.Module,
    example: torch.Tensor,
    classifier: nn.Module,
    recipe: str,
    ratio: float,
    calibration: Sequence[torch.Tensor] = (),
    round_to: int = 8,
    measure: Callable[[nn.Module], float] | None = None,
) -> tuple[nn.Module, dict[str, list[int]]]:
    """A pruned copy of `model` by Torch-Pruning's `recipe` (uniform_l1, global_taylor, global_lamp, width),
    with the original output indices each edited layer kept (for reconstruction).

    `measure(pruned)` is the cost ratio held to `ratio`: MACs by default; the accuracy benchmark passes a
    latency table's prediction to hold the recipes to a measured speed-up.
    """
    if measure is None:
        base = count_cost(model, example).macs

        def measure(pruned: nn.Module) -> float:
            return count_cost(pruned, example).macs / base

    def pruned_at(ratio: float) -> tuple[nn.Module, dict[str, list[int]]]:
        candidate = copy.deepcopy(model).eval()
        importance, global_pruning = _importance(recipe)
        head = dict(candidate.named_modules())[_name(model, classifier)]
        pruner = tp.pruner.MetaPruner(
            candidate,
            example,
            importance=importance,
            global_pruning=global_pruning,
            pruning_ratio=ratio,
            ignored_layers=[head],
            round_to=round_to,
        )
        if recipe == "global_taylor":
            _taylor_gradients(candidate, calibration)
        names = {m: n for n, m in candidate.named_modules()}
        kept: dict[str, list[int]] = {}
        for group in pruner.step(interactive=True):
            record_kept_outputs(group, pruner.DG, names, kept)
            group.prune()
        return candidate, kept

    return _bisect(pruned_at, lambda made: measure(made[0]), ratio)


def _importance(recipe: str):
    if recipe == "uniform_l1":
        return tp.importance.GroupMagnitudeImportance(p=1), False
    if recipe == "global_taylor":
        return tp.importance.GroupTaylorImportance(), True
    if recipe == "global_lamp":
        return tp.importance.LAMPImportance(p=2), True
    if recipe == "width":
        return _FirstChannels(), False
    raise ValueError(f"unknown Torch-Pruning recipe {recipe}")


class _FirstChannels(tp.importance.Importance):
    """Keep the first channels of every layer: width scaling, no criterion."""

    def __call__(self, group):
        channels = len(group[0][1])
        return torch.arange(channels, 0, -1, dtype=torch.float32)


def _taylor_gradients(model: nn.Module, calibration: Sequence[torch.Tensor]) -> None:
    """What Torch-Pruning's Taylor example does: a backward pass of the loss before `pruner.step()`.

    The images are unlabeled, so the targets are the unpruned model's own top-1 predictions.
    """
    model.zero_grad()
    for x in calibration:
        with torch.no_grad():
            target = model(x).argmax(1)
        F.cross_entropy(model(x), target).backward()


def _bisect(make: Callable[[float], Any], measure: Callable[[Any], float], target: float) -> Any:
    """The pruning ratio whose model's measured ratio is nearest `target` (it falls as the ratio grows)."""
    low, high = 0.0, 0.95
    best = None
    for _ in range(12):
        middle = (low + high) / 2
        model = make(middle)
        achieved = measure(model)
        if best is None or abs(achieved - target) < abs(best[0] - target):
            best = (achieved, model)
        if abs(achieved - target) <= 0.005:
            break
        if achieved > target:
            low = middle
        else:
            high = middle
    return best[1]


def _name(model: nn.Module, module: nn.Module) -> str:
    return next(n for n, m in model.named_modules() if m is module)
