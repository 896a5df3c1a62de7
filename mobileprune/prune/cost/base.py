"""The cost-model interface and its registry (`--by NAME`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ...registry import Registry


class CostModel(Protocol):
    """One number per model (parameters, MACs, milliseconds, ...) and how removals change it."""

    metric: str  # its --by name, for messages and reports

    def baseline(self) -> float:
        """The unpruned model's cost."""

    def predict(self, removed: Mapping[str, int]) -> float:
        """The cost after removing `removed[group]` units from each group."""

    def saving(self, removed: Mapping[str, int], group: str, extra: int) -> float:
        """How much removing `extra` more units of `group` saves, given `removed` so far."""


COST_MODELS: Registry[CostModel] = Registry("by", "mobileprune.prune.cost")
