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
        """Apply every step to `model` (freshly built, unpruned) in order; returns the model.

        A step that cannot apply (an unknown group, a channel index out of range) raises `PlanError`.
        """
        if not self.steps:
            return model
        graph = PruningGraph(model, example_input, protected)
        roots = {g.name for g in graph.groups}
        for n, step in enumerate(self.steps, 1):
            if step.group not in roots:
                raise PlanError(f"step {n} names group '{step.group}', which this architecture does not have")
            channels = graph.channels(step.group)
            bad = [i for i in step.removed if not 0 <= i < channels]
            if bad or len(set(step.removed)) >= channels:
                what = f"channel {bad[0]}" if bad else f"all {channels} channels"
                raise PlanError(f"step {n} removes {what} of '{step.group}', which has {channels} at that point")
            graph.prune(step.group, list(step.removed))
        return model

    def to_json(self) -> list[dict[str, Any]]:
        return [{"group": s.group, "removed": list(s.removed)} for s in self.steps]

    @classmethod
    def from_json(cls, data: list[dict[str, Any]]) -> ChannelPlan:
        steps = []
        for n, d in enumerate(data, 1):
            group, removed = d["group"], d["removed"]
            if not isinstance(group, str) or not all(isinstance(i, int) and not isinstance(i, bool) for i in removed):
                raise PlanError(f"step {n} must name a group and list whole channel indices")
            steps.append(PruneStep(group, tuple(removed)))
        return cls(steps)


class PlanError(ValueError):
    """A plan that does not fit the architecture it is replayed on."""
