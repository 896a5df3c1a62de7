"""Channel-ranking criteria: which channels of a group to remove first.

Each criterion is a small class with one method, `scores(group) -> tensor` (one score per root channel,
higher = more important), registered by name so that `--criterion NAME` is a dictionary lookup. Schedules
take a criterion as a value and never ask which one it is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
import torch_pruning as tp

from .registry import Registry

CRITERIA: Registry[Criterion] = Registry("criterion")


def get_criterion(name: str) -> Criterion:
    return CRITERIA.create(name)


class Criterion(ABC):
    """Ranks the channels of one dependency group."""

    name: ClassVar[str]
    description: ClassVar[str]

    @abstractmethod
    def scores(self, group: tp.dependency.Group) -> torch.Tensor:
        """One non-negative score per root channel of `group`; the lowest are removed first."""


@CRITERIA.register
class L1Criterion(Criterion):
    """Li et al. 2017, "Pruning Filters for Efficient ConvNets", summed over the whole group.

    A filter's L1 norm alone ignores that removing it also removes BN entries, depthwise filters and
    consumer input slices; torch-pruning's group magnitude averages the L1 norm over all of them.
    """

    name = "l1"
    description = "filter L1 norm (Li et al. 2017) over the dependency group"

    def __init__(self) -> None:
        self._importance = tp.importance.GroupMagnitudeImportance(p=1, group_reduction="mean", normalizer=None)

    def scores(self, group: tp.dependency.Group) -> torch.Tensor:
        return self._importance(group)
