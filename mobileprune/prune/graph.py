"""The dependency graph: which channels must go together, built on torch-pruning's DepGraph.

A `ChannelGroup` is one prunable unit: the output channels of a producer conv (or linear) together with
every coupled slice elsewhere: its batch-norm entries, the depthwise convs that follow it, the input
channels of every consumer, and, through residual adds, the other producers of the same tensor.
Depthwise convs are never roots: their channels always follow the conv that feeds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch_pruning as tp

from ..errors import UserError
from ..models.tracing_fixes import BARRIER_TYPES, customized_pruners


@dataclass(frozen=True)
class GroupMember:
    """One module whose weights shrink when the group loses channels."""

    module: str  # dotted name in the model
    side: str  # "out": the module's output channels (or a channel-wise layer); "in": its input channels
    index_map: tuple[tuple[int, int], ...]  # (root channel, this module's channel index) pairs

    def per_unit(self, units: int) -> int:
        """Channels this module loses per removed unit of its group."""
        return max(1, len({i for _, i in self.index_map}) // max(1, units))


@dataclass(frozen=True)
class ChannelGroup:
    """Output channels of one producer (`name`) and everything coupled to them.

    `units` partitions the root channels into sets that can only be removed together. Usually every
    unit is one channel; in a GhostNet module a depthwise "cheap" op copies the primary conv's channels
    into the same residual stream, so channel j and channel j + C/2 of that stream are one unit.
    """

    name: str
    channels: int
    members: tuple[GroupMember, ...]
    units: tuple[tuple[int, ...], ...]

    @property
    def unit_size(self) -> int:
        return self.channels // len(self.units)

    def modules(self) -> set[str]:
        return {m.module for m in self.members}

    def channels_to_remove(self, scores: torch.Tensor, units: int) -> list[int]:
        """Root channels of the `units` least important units (mean score over each unit)."""
        if units <= 0:
            return []
        scores = scores.detach().float().cpu()
        unit_scores = torch.stack([scores[list(u)].mean() for u in self.units])
        # Stable sort: ties (e.g. several all-zero filters) resolve to the lowest index, reproducibly.
        chosen = torch.argsort(unit_scores, stable=True)[:units].tolist()
        return sorted(c for u in chosen for c in self.units[u])


def is_depthwise(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.modules.conv._ConvNd)
        and module.groups > 1
        and module.groups == module.in_channels == module.out_channels
    )


class PruningGraph:
    """torch-pruning's DependencyGraph with mobileprune's rules for what may be a root.

    The graph holds the model's modules by reference: pruning a group edits the model in place, and the
    same graph stays valid for later prunes (which is what the layer-by-layer schedule needs).
    """

    def __init__(self, model: nn.Module, example_input: torch.Tensor, protected: Sequence[nn.Module] = ()):
        self.model = model
        self._names = {m: n for n, m in model.named_modules()}
        self._protected = list(protected)
        try:
            with torch.enable_grad():  # the tracer follows autograd; a caller's torch.no_grad() would stop it
                self.dg = tp.DependencyGraph().build_dependency(
                    model, example_inputs=example_input, customized_pruners=customized_pruners()
                )
        except Exception as exc:  # torch-pruning raises bare errors from deep inside its tracer
            raise UserError(_untraceable_message(exc)) from exc
        self.groups: list[ChannelGroup] = self._collect_groups()
        self._by_name = {g.name: g for g in self.groups}
        self._origin = {g.name: list(range(g.channels)) for g in self.groups}
        self._kept_outputs: dict[str, list[int]] = {}  # per edited module: original indices of its outputs

    # --- queries -------------------------------------------------------------------------------
    def group(self, name: str) -> ChannelGroup:
        return self._by_name[name]

    def channels(self, name: str) -> int:
        """Current output channels of a group's root (changes as the model is pruned)."""
        root = self.model.get_submodule(name)
        return int(self.dg.get_pruner_of_module(root).get_out_channels(root))

    def tp_group(self, name: str, idxs: Sequence[int] | None = None) -> tp.dependency.Group:
        """torch-pruning's group for the root's current channels (all of them unless idxs is given)."""
        root = self.model.get_submodule(name)
        pruner = self.dg.get_pruner_of_module(root)
        if idxs is None:
            idxs = list(range(pruner.get_out_channels(root)))
        return self.dg.get_pruning_group(root, pruner.prune_out_channels, list(idxs))

    def original_channels(self, name: str) -> list[int]:
        """For each current channel of group `name`, its index before any prune through this graph.

        What a criterion needs that scored channels once, up front (learned gates), and is asked again
        after the group has already lost some of them (the greedy schedule).
        """
        return list(self._origin[name])

    def current_group(self, name: str) -> ChannelGroup:
        """Group `name` in its current channel numbering (after earlier prunes of the same group)."""
        members = self._members(self.tp_group(name)) or []
        channels = self.channels(name)
        return ChannelGroup(name, channels, tuple(members), self._units(name, channels, members))

    # --- edits ---------------------------------------------------------------------------------
    def prune(self, name: str, idxs: Sequence[int]) -> None:
        """Remove output channels `idxs` (current numbering) of group `name`, everywhere they reach."""
        if not idxs:
            return
        if len(set(idxs)) >= self.channels(name):
            raise ValueError(f"refusing to remove every channel of {name}")
        removed = sorted(set(int(i) for i in idxs))
        group = self.tp_group(name, removed)
        if not self.dg.check_pruning_group(group):
            raise ValueError(f"torch-pruning refused to prune {name} at {list(idxs)[:8]}")
        record_kept_outputs(group, self.dg, self._names, self._kept_outputs)
        group.prune()
        if name in self._origin:
            gone = set(removed)
            self._origin[name] = [o for i, o in enumerate(self._origin[name]) if i not in gone]

    def kept_outputs(self, layer: str) -> list[int] | None:
        """Original indices of `layer`'s current output channels; None if prunes through this graph kept all."""
        return self._kept_outputs.get(layer)

    # --- construction --------------------------------------------------------------------------
    def _collect_groups(self) -> list[ChannelGroup]:
        order = {n: i for i, (n, _) in enumerate(self.model.named_modules())}
        groups: list[ChannelGroup] = []
        seen_roots: set[str] = set()
        ignored = self._protected + [m for m in self.model.modules() if isinstance(m, BARRIER_TYPES)]
        for tp_group in self.dg.get_all_groups(
            ignored_layers=ignored, root_module_types=[nn.modules.conv._ConvNd, nn.Linear]
        ):
            members = self._members(tp_group)
            if members is None:  # touches a barrier (e.g. a channel shuffle): leave it alone
                continue
            root = self._producer(members, order)
            if root is None or root in seen_roots:
                continue
            seen_roots.add(root)
            # Re-root at the producer so that channel indices are the producer's (torch-pruning may
            # hand us a group rooted at a depthwise conv).
            rerooted = tuple(self._members(self.tp_group(root)) or members)
            channels = self.channels(root)
            groups.append(ChannelGroup(root, channels, rerooted, self._units(root, channels, rerooted)))
        groups.sort(key=lambda g: order[g.name])
        return groups

    def _members(self, tp_group) -> list[GroupMember] | None:
        members: list[GroupMember] = []
        for item in tp_group:
            module = item.dep.target.module
            if isinstance(module, BARRIER_TYPES):
                return None
            name = self._names.get(module)
            if name is None or not any(True for _ in module.parameters(recurse=False)):
                continue  # torch-pruning's pseudo-modules for element-wise ops, concat, split, ...
            side = "out" if self.dg.is_out_channel_pruning_fn(item.dep.handler) else "in"
            pairs = tuple(zip((int(r) for r in item.root_idxs), (int(i) for i in item.idxs), strict=True))
            members.append(GroupMember(name, side, pairs))
        return members

    def _units(self, root: str, channels: int, members: Sequence[GroupMember]) -> tuple[tuple[int, ...], ...]:
        """Partition root channels into sets torch-pruning always removes together.

        Only groups with a member that sees part of the channels (a concat) can tie channels; for those
        we ask torch-pruning for the closure of each channel, which is exact but costs one query each.
        """
        if all(len({r for r, _ in m.index_map}) == channels for m in members):
            return tuple((c,) for c in range(channels))
        unit_of: dict[int, tuple[int, ...]] = {}
        for c in range(channels):
            if c in unit_of:
                continue
            closure = tuple(sorted(int(i) for i in self.tp_group(root, [c])[0].idxs))
            for i in closure:
                unit_of[i] = closure
        return tuple(sorted(set(unit_of.values())))

    def _producer(self, members: list[GroupMember], order: dict[str, int]) -> str | None:
        """The first non-depthwise conv or linear whose outputs the group prunes."""
        candidates = []
        for m in members:
            module = self.model.get_submodule(m.module)
            if m.side != "out" or is_depthwise(module):
                continue
            if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
                candidates.append(m.module)
        return min(candidates, key=order.__getitem__) if candidates else None


def record_kept_outputs(group, dg, names: dict[nn.Module, str], kept_outputs: dict[str, list[int]]) -> None:
    """Before `group.prune()`: update, per layer whose outputs the group removes, the original indices it keeps.

    Reconstruction needs them: a layer that lost outputs must be fitted to those outputs of the original.
    """
    done = set()
    for item in group:
        module = item.dep.target.module
        if not dg.is_out_channel_pruning_fn(item.dep.handler) or module not in names or names[module] in done:
            continue
        layer = names[module]
        done.add(layer)
        gone = {int(i) for i in item.idxs}
        kept = kept_outputs.get(layer) or list(range(_out_channels(module)))
        kept_outputs[layer] = [k for i, k in enumerate(kept) if i not in gone]


def _out_channels(module: nn.Module) -> int:
    for attr in ("out_channels", "out_features", "num_features", "num_channels", "num_parameters"):
        if hasattr(module, attr):
            return int(getattr(module, attr))
    return int(next(module.parameters(recurse=False)).shape[0])


def _untraceable_message(exc: BaseException) -> str:
    """Name the op torch-pruning choked on, from the frames of its traceback."""
    where = ""
    tb = exc.__traceback__
    while tb is not None:
        for var in ("reshape_node", "cat_node", "split_node", "node"):
            node = tb.tb_frame.f_locals.get(var)
            if node is not None and hasattr(node, "name"):
                near = [getattr(n, "name", "?") for n in getattr(node, "inputs", [])][:1]
                where = f" at op {node.name}" + (f" (fed by {near[0]})" if near else "")
        tb = tb.tb_next
    return (
        f"the dependency-graph walker cannot follow this model{where}: {type(exc).__name__}: {exc}. "
        "Channel-mixing reshapes (e.g. a channel shuffle written inline) are not supported; wrap them in a "
        "module or report the architecture"
    )
