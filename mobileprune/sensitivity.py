"""Per-group sensitivity: how much the network's output changes when one group alone loses channels.

Measured the cheap way: instead of pruning a copy of the model for every (group, ratio), forward
pre-hooks zero the removed channels at the inputs of the group's consumers. For convs and linears a zero
input channel contributes nothing, so this equals the pruned network exactly (biases and BN of the
consumers included), while the model is never copied or edited.

Damage is the KL divergence from the unpruned model's predictions on a fixed calibration batch: it needs
no labels, so unlabeled images (or, without data, random noise as a data-free proxy) are enough.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .criteria import Criterion
from .graph import ChannelGroup, PruningGraph

DEFAULT_FRACTIONS = (0.125, 0.25, 0.5, 0.75)


@dataclass(frozen=True)
class DamageCurve:
    """Damage as a function of removed units: measured points, linear in between and beyond."""

    points: tuple[tuple[int, float], ...]  # (units removed, damage), starting at (0, 0.0)

    def at(self, units: int) -> float:
        xs = [p[0] for p in self.points]
        i = bisect.bisect_right(xs, units) - 1
        i = min(max(i, 0), len(self.points) - 2)
        (x0, y0), (x1, y1) = self.points[i], self.points[i + 1]
        return y0 + (y1 - y0) * (units - x0) / max(x1 - x0, 1)

    def to_json(self) -> list[list[float]]:
        return [[x, y] for x, y in self.points]


@torch.no_grad()
def measure_sensitivity(
    model: nn.Module,
    graph: PruningGraph,
    criterion: Criterion,
    batches: Sequence[torch.Tensor],
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    progress: Callable[[], None] | None = None,
) -> dict[str, DamageCurve]:
    """Damage curve of every group of `graph`, each group pruned alone by `criterion`."""
    model.eval()
    reference = [F.log_softmax(model(x), dim=1) for x in batches]
    curves: dict[str, DamageCurve] = {}
    for group in graph.groups:
        scores = criterion.scores(graph, group.name)
        points = [(0, 0.0)]
        worst = 0.0
        for units in sorted({min(max(1, round(f * len(group.units))), len(group.units) - 1) for f in fractions}):
            if units <= 0:
                continue
            channels = group.channels_to_remove(scores, units)
            with masked(model, group, channels):
                damage = sum(_kl(ref, model(x)) for ref, x in zip(reference, batches, strict=True))
            worst = max(worst, damage / len(batches))  # damage never falls as more is removed
            points.append((units, worst))
        if len(points) == 1:
            points.append((1, 0.0))
        curves[group.name] = DamageCurve(tuple(points))
        if progress:
            progress()
    return curves


def _kl(reference_log_probs: torch.Tensor, logits: torch.Tensor) -> float:
    return float(F.kl_div(F.log_softmax(logits, dim=1), reference_log_probs, log_target=True, reduction="batchmean"))


class masked:
    """Context manager: the consumers of `group` see zeros in place of the removed root channels."""

    def __init__(self, model: nn.Module, group: ChannelGroup, channels: Sequence[int]):
        self.handles = []
        removed = set(channels)
        for member in group.members:
            if member.side != "in":
                continue
            idxs = sorted({i for r, i in member.index_map if r in removed})
            if idxs:
                module = model.get_submodule(member.module)
                self.handles.append(module.register_forward_pre_hook(_zero_inputs(module, idxs)))

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()


def _zero_inputs(module: nn.Module, idxs: list[int]):
    dim = -1 if isinstance(module, nn.Linear) else 1
    index = torch.tensor(idxs)

    def hook(mod, args):
        x = args[0].clone()
        x.index_fill_(dim, index.to(x.device), 0.0)
        return (x, *args[1:])

    return hook
