"""`ucb`: a UCB1 bandit over channels, reward = loss increase when masked (Ameen & Vadera 2019)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...registry import option
from ..graph import PruningGraph
from ..masking import consumers_of, masked
from ..suffix_forward import SuffixForward
from .base import CRITERIA, CalibrationData, Criterion


@CRITERIA.register
@dataclass
class UCBCriterion(Criterion):
    """Multi-armed bandit channel selection (Ameen & Vadera 2019): channels are arms, UCB1 picks pulls.

    Pulling arm c masks channel c on one calibration batch; its reward is the loss increase that
    causes (so the least important arms earn the least). UCB1 spends `pulls_per_channel` x channels pulls
    where they tell most; the score is each arm's mean loss increase.
    """

    name = "ucb"
    description = "UCB1 bandit over channels, reward = loss increase when masked (Ameen & Vadera 2019)"
    needs_data = True
    pulls_per_channel: float = option(2.0, "bandit pulls per channel, its cost (--ucb-pulls)")
    exploration: float = option(0.5, "weight of UCB1's exploration bonus")
    seed: int = option(0, "seed of the batch each pull uses (shrink passes --seed)")
    generator: torch.Generator = field(init=False, repr=False)
    model: nn.Module | None = field(init=False, default=None, repr=False)
    data: CalibrationData | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        if self.pulls_per_channel < 1:
            from ...errors import UserError

            raise UserError(f"--ucb-pulls must be at least 1 (every channel pulled once), not {self.pulls_per_channel}")
        self.generator = torch.Generator().manual_seed(self.seed)

    def prepare(self, model: nn.Module, data: CalibrationData | None) -> None:
        self.model, self.data = model, data

    @torch.no_grad()
    def scores(self, graph: PruningGraph, name: str) -> torch.Tensor:
        if self.model is None or not self.data:
            raise RuntimeError("ucb needs calibration images: call prepare() first")
        model, data = self.model.eval(), self.data
        group = graph.group(name)
        arms = graph.channels(name)
        base = [float(F.cross_entropy(model(x), t)) for x, t in zip(data.batches, data.targets, strict=True)]
        suffix = SuffixForward(model, data.batches)  # a pull runs only the blocks from the group's consumers on
        start = suffix.start(consumers_of(group))
        total = torch.zeros(arms)
        pulls = torch.zeros(arms)
        budget = max(arms, math.ceil(self.pulls_per_channel * arms))
        for step in range(budget):
            if step < arms:
                arm = step  # every arm once
            else:
                mean = total / pulls
                spread = float(mean.max() - mean.min()) or 1.0  # rewards are loss deltas: scale the bonus
                bonus = self.exploration * spread * torch.sqrt(2 * math.log(step + 1) / pulls)
                arm = int(torch.argmax(-(mean) + bonus))  # explore the arms that look least important
            b = int(torch.randint(len(data.batches), (1,), generator=self.generator))
            with masked(model, group, [arm]):
                (output,) = suffix.outputs(start, b)
            loss = float(F.cross_entropy(output, data.targets[b]))
            total[arm] += loss - base[b]
            pulls[arm] += 1
        return (total / pulls).clamp(min=0)
