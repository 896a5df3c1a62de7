"""`sensitivity`: remove where it hurts least, by each group's measured damage per unit of cost saved.

Damage curves come from masking (see `masking.py`): each group alone loses 1/8, 1/4, 1/2 and 3/4 of its
units, chosen by the criterion, and the network's output is compared with the unpruned one; the model
is never copied or edited.

Damage is the KL divergence from the unpruned model's predictions on a fixed calibration batch: it needs
no labels, so unlabeled images (or, without data, random noise as a data-free proxy) are enough. A probe
runs only the blocks from the group's first consumer on (suffix_forward.py).

When reconstruction follows the prune, the probes are compensated (compensation.py): removed channels
read as their linear prediction from the kept ones, so a group is charged the damage reconstruction
cannot undo rather than the damage of plain zeros.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...channels_last import channels_last
from ..compensation import InputStatistics
from ..criteria import Criterion
from ..graph import ChannelGroup, PruningGraph
from ..masking import consumers_of, masked
from ..reconstruct import refittable_layers
from ..suffix_forward import SuffixForward
from .engine import ALLOCATIONS, AllocationInputs, AllocationStrategy

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
    known: dict[str, DamageCurve] | None = None,
    measured: Callable[[dict[str, DamageCurve]], None] | None = None,
    statistics: InputStatistics | None = None,
) -> dict[str, DamageCurve]:
    """Damage curve of every group of `graph`, each group pruned alone by `criterion`.

    `known` curves (from a checkpoint) are not measured again; `measured` sees the curves after each group.
    With `statistics` the probes are compensated (see the module docstring).
    """
    model.eval()
    with channels_last(batches[0], model):  # every probe's forward pass, at CPU speed
        reference = [F.log_softmax(model(x), dim=1) for x in batches]
        suffix = SuffixForward(model, batches)
        starts = {g.name: suffix.start(consumers_of(g)) for g in graph.groups}
        curves: dict[str, DamageCurve] = {}
        for group in sorted(graph.groups, key=lambda g: starts[g.name]):  # the cached block inputs only move on
            if known and group.name in known:
                curves[group.name] = known[group.name]
                if progress:
                    progress()
                continue
            scores = criterion.scores(graph, group.name)
            points = [(0, 0.0)]
            worst = 0.0
            for units in sorted({min(max(1, round(f * len(group.units))), len(group.units) - 1) for f in fractions}):
                if units <= 0:
                    continue
                channels = group.channels_to_remove(scores, units)
                with masked(model, group, channels, statistics):
                    outputs = suffix.outputs(starts[group.name])
                damage = sum(_kl(ref, out) for ref, out in zip(reference, outputs, strict=True))
                worst = max(worst, damage / len(batches))  # damage never falls as more is removed
                points.append((units, worst))
            if len(points) == 1:
                points.append((1, 0.0))
            curves[group.name] = DamageCurve(tuple(points))
            if measured:
                measured(curves)
            if progress:
                progress()
        return {g.name: curves[g.name] for g in graph.groups}


def _kl(reference_log_probs: torch.Tensor, logits: torch.Tensor) -> float:
    return float(F.kl_div(F.log_softmax(logits, dim=1), reference_log_probs, log_target=True, reduction="batchmean"))


@ALLOCATIONS.register
@dataclass
class SensitivityAllocation(AllocationStrategy):
    """Least measured damage per unit of cost saved (KL from the unpruned model on calibration inputs)."""

    name = "sensitivity"
    description = "measured damage (KL vs the unpruned model) per unit of cost saved"
    curves: dict[str, DamageCurve] = field(default_factory=dict)
    source: str = ""

    def prepare(self, inputs: AllocationInputs) -> None:
        graph, progress = inputs.graph, inputs.progress
        self.source = f"{'data-free proxy: ' if inputs.data_free else ''}KL on {inputs.source}"
        statistics = None
        if inputs.statistics_images:
            layers = refittable_layers(inputs.model)
            statistics = InputStatistics.measure(inputs.model, layers, inputs.statistics_images)
            images = sum(len(b) for b in inputs.statistics_images)
            self.source += (
                f", removed channels predicted from kept ones ({images} other images; reconstruction follows)"
            )
        progress.log(f"measuring sensitivity of {len(graph.groups)} groups ({self.source})")
        known = {name: DamageCurve(tuple(map(tuple, points))) for name, points in (inputs.resume or {}).items()}
        save = inputs.save_partial

        def measured(curves: dict[str, DamageCurve]) -> None:
            if save is not None:
                save({name: curve.to_json() for name, curve in curves.items()})

        with progress.task("sensitivity", len(graph.groups)) as bar:
            self.curves = measure_sensitivity(
                inputs.model,
                graph,
                inputs.criterion,
                inputs.batches,
                progress=bar.advance,
                known=known,
                measured=measured,
                statistics=statistics,
            )

    def step_cost(self, group: ChannelGroup, now: int, after: int, saved: float) -> float:
        curve = self.curves[group.name]
        return (curve.at(after) - curve.at(now)) / saved  # the engine offers only steps that save something

    def describe(self) -> str:
        return f"sensitivity ({self.source})"

    def predicted_damage(self, removed: Mapping[str, int]) -> float:
        """Sum of each group's measured damage at its removal (groups taken as independent, as allocating does)."""
        return sum(self.curves[name].at(units) for name, units in removed.items() if units)
