"""A model as mobileprune holds it: the network, its spec, where it came from, and the plan already applied."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..models import ModelSpec
from ..prune.plan import ChannelPlan


@dataclass
class LoadedModel:
    model: nn.Module
    spec: ModelSpec
    source: str  # what the user passed, for reports
    weights: str  # "random", "pretrained (library)", or "checkpoint"
    sha256: str | None = None  # of the checkpoint file, when there is one
    plan: ChannelPlan = field(default_factory=ChannelPlan)  # steps already applied (shrunk-again models)
    notes: list[str] = field(default_factory=list)  # what was decided on the user's behalf (an inferred --arch)
    masks: dict[str, torch.Tensor] = field(default_factory=dict)  # a sparsify output's: layer → True where kept
