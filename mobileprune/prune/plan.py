"""The channel plan: an ordered record of which channels were removed, replayable on a fresh model.

Saving a pruned model as a pickle ties it to our classes; saving only weights leaves nothing to rebuild
the smaller architecture from. The plan closes that gap: rebuild the original architecture from its
`ModelSpec`, replay each step through the dependency graph, and the safetensors weights fit exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from .graph import PruningGraph

PLAN_FORMAT = 1


@dataclass(frozen=True)
class PruneStep:
    group: str  # root module of the group
    removed: tuple[int, ...]  # channel indices in the numbering current when the step ran


@dataclass
class ChannelPlan:
    steps: list[PruneStep] = field(default_factory=list)

    def add(self, group: str, removed: list[int]) -> None:
        if removed:
            self.steps.append(PruneStep(group, tuple(int(i) for i in removed)))

    def replay(self, model: nn.Module, example_input: torch.Tensor, protected: list[nn.Module]) -> nn.Module:
        """Apply every step to `model` (freshly built, unpruned) in order; returns the model."""
        if not self.steps:
            return model
        graph = PruningGraph(model, example_input, protected)
        for step in self.steps:
            graph.prune(step.group, list(step.removed))
        return model

    def to_json(self) -> list[dict[str, Any]]:
        return [{"group": s.group, "removed": list(s.removed)} for s in self.steps]

    @classmethod
    def from_json(cls, data: list[dict[str, Any]]) -> ChannelPlan:
        return cls([PruneStep(d["group"], tuple(d["removed"])) for d in data])
