"""Feature distillation: the pruned student's layer outputs pulled towards the unpruned teacher's.

With a few hundred images, logits alone teach little (1000 numbers per image, most of them near zero);
every layer's output carries far more, and matching them is reconstruction (see prune/reconstruct.py)
trained end to end, through the non-linearities and the depthwise convs that least squares cannot re-fit.
A pruned layer is compared on the teacher channels it kept. Each layer's error is divided by the
teacher output's energy, so early, large activations do not drown the late ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn


class FeatureMatch:
    """Hooks that record `layers` in a student and a teacher, and the loss between them."""

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        layers: Sequence[str],
        kept_outputs: Callable[[str], list[int] | None] = lambda layer: None,
    ):
        self.layers = list(layers)
        self._student: dict[str, torch.Tensor] = {}
        self._teacher: dict[str, torch.Tensor] = {}
        self._kept = {name: kept_outputs(name) for name in self.layers}
        self._handles = [
            module.get_submodule(name).register_forward_hook(self._record(store, name))
            for module, store in ((student, self._student), (teacher, self._teacher))
            for name in self.layers
        ]

    @staticmethod
    def _record(store: dict[str, torch.Tensor], name: str):
        def hook(module, args, output):
            store[name] = output

        return hook

    def loss(self) -> torch.Tensor:
        """Mean over layers of ||student - teacher(kept channels)||² / ||teacher||², for the last forward pass."""
        terms = []
        for name in self.layers:
            target = self._teacher[name].detach()
            kept = self._kept[name]
            if kept is not None:
                target = target[:, kept]
            student = self._student[name]
            terms.append((student - target).pow(2).mean() / target.pow(2).mean().clamp_min(1e-8))
        self._student.clear()
        self._teacher.clear()
        return torch.stack(terms).mean()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
