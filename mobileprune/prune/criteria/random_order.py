"""`random`: a seeded random ranking, the baseline every method must beat."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...registry import option
from ..graph import PruningGraph
from .base import CRITERIA, Criterion


@CRITERIA.register
@dataclass
class RandomCriterion(Criterion):
    """The honest baseline: a method that does not beat it has not learned anything about the network."""

    name = "random"
    description = "seeded random ranking (baseline)"
    seed: int = option(0, "seed of the random order (shrink passes --seed)")
    generator: torch.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.generator = torch.Generator().manual_seed(self.seed)

    def scores(self, graph: PruningGraph, name: str) -> torch.Tensor:
        return torch.rand(graph.channels(name), generator=self.generator)
