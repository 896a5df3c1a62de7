"""What a channel-ranking criterion is, and the calibration data that data criteria rank with.

Each criterion is a small class in its own module of this package, registered in `CRITERIA`, so
`--criterion NAME` is a lookup and schedules never ask which one they hold. `scores(graph, name)` gives
one score per root channel of group `name` (higher = more important). Criteria that look at data get
calibration images through `prepare()`, called on the current model before a group is scored: a
pruned model has new weights and shapes, so gradients from before a prune are stale.

The targets for data criteria are the unpruned model's own top-1 predictions on those images: no labels
needed, and the loss measures what pruning should preserve, agreement with the original model. (At the
original weights a KL-to-teacher loss has zero gradient, so it cannot rank anything.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
import torch.nn as nn
import torch_pruning as tp

from ...registry import Registry
from ..graph import PruningGraph
from ..sparsity import BNScaleL1, SparsityRegulariser

CRITERIA: Registry[Criterion] = Registry("criterion", "mobileprune.prune.criteria")


@dataclass
class CalibrationData:
    """Images and the unpruned model's predictions on them: what data criteria rank channels with."""

    batches: list[torch.Tensor]
    targets: list[torch.Tensor]  # top-1 class of the unpruned model per image
    # what reconstruction will fit on, without the images of `batches` (compensation.held_apart): statistics
    # of layer inputs need far more images than a probe does; empty when no reconstruction follows
    fitting: list[torch.Tensor] = field(default_factory=list)

    @classmethod
    @torch.no_grad()
    def from_model(cls, model: nn.Module, batches: Sequence[torch.Tensor]) -> CalibrationData:
        model.eval()
        return cls(list(batches), [model(x).argmax(1) for x in batches])


class Criterion:
    """Ranks the channels of one dependency group."""

    name: ClassVar[str]
    description: ClassVar[str]
    needs_data: ClassVar[bool] = False
    # True when raw scores mean the same in every layer (BN scale factors): a global ranking may compare
    # them directly, as network slimming does; otherwise they are normalised per group first.
    comparable_across_layers: ClassVar[bool] = False
    # Whether the criterion reads scales that sparsity training (`--sparsity-train`) shapes: "required"
    # when it has nothing to rank without it, "optional" when trained scales merely rank better.
    sparsity_training: ClassVar[Literal["unused", "optional", "required"]] = "unused"
    # True when it ranks by layer-input statistics, which need reconstruction's images (`CalibrationData.fitting`)
    needs_fitting_images: ClassVar[bool] = False

    def sparsity_regulariser(self, model: nn.Module, graph: PruningGraph, strength: float) -> SparsityRegulariser:
        """What `--sparsity-train` trains with: network slimming's L1 on BN scales unless the method has its own."""
        return BNScaleL1(model, strength)

    def prepare(self, model: nn.Module, data: CalibrationData | None) -> None:
        """Look at the current model (and data) before scoring; data-free criteria need nothing."""

    def scores(self, graph: PruningGraph, name: str) -> torch.Tensor:
        """One non-negative score per root channel of group `name`; the lowest are removed first."""
        return self.importance()(graph.tp_group(name)).detach().float().cpu()

    def importance(self) -> tp.importance.Importance:
        """The torch-pruning importance the default `scores` applies to the group."""
        raise NotImplementedError(f"{type(self).__name__} scores groups itself")
