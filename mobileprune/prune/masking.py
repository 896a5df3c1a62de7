"""Masking: a group's removed channels read as zeros by its consumers, without editing the model.

For convs and linears a zero input channel contributes nothing, so a masked model computes exactly what
the pruned one would (consumer biases and batch norms included): measuring a candidate prune costs one
forward pass instead of a deep copy and a real prune. Sensitivity, the greedy measured allocation and the
ucb criterion all measure this way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from .compensation import InputStatistics
from .graph import ChannelGroup


def consumers_of(group: ChannelGroup) -> list[str]:
    """The modules a probe of `group` changes: its consumers (input side); everything before them is as it was."""
    return [member.module for member in group.members if member.side == "in"]


class masked:
    """Context manager: the consumers of `group` see zeros in place of the removed root channels.

    With `statistics`, consumers it has statistics for see the removed channels' linear prediction from
    the kept ones instead (compensation.py): the damage that remains once reconstruction re-fits them.
    """

    def __init__(
        self, model: nn.Module, group: ChannelGroup, channels: Sequence[int], statistics: InputStatistics | None = None
    ):
        self.handles = []
        removed = set(channels)
        for member in group.members:
            if member.side != "in":
                continue
            idxs = sorted({i for r, i in member.index_map if r in removed})
            if idxs:
                module = model.get_submodule(member.module)
                if statistics is not None and member.module in statistics:
                    hook = statistics.prediction_hook(member.module, module, idxs)
                else:
                    hook = _zero_inputs(module, idxs)
                self.handles.append(module.register_forward_pre_hook(hook))

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()


def _zero_inputs(module: nn.Module, idxs: list[int]):
    dim = -1 if isinstance(module, nn.Linear) else 1
    index = torch.tensor(idxs)

    def hook(mod, args):
        x = args[0].clone()
        x.index_fill_(dim, index.to(x.device), 0.0)
        return (x, *args[1:])

    return hook
