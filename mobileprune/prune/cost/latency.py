"""`--by latency`: milliseconds on the app's runtime, predicted from per-layer tables and verified by timing.

The prediction is additive, as NetAdapt's lookup tables are: the sum of every conv/linear's table time
(`latency_table.py`) at its pruned width, times a scale, plus an offset. Scale and offset come from
timing the whole model twice, unpruned and at about half width: what the tables do not see (pooling,
adds, layout, the runtime's per-inference overhead) partly shrinks with the channels and partly not.

The allocation engine uses it like params or MACs (damage per millisecond saved). Because a prediction
is not a measurement, `measure()` prunes a copy to an allocation and times it interleaved against the
unpruned model; the pipeline corrects the allocation until the measured ratio is within tolerance
(`measured_target.py`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn as nn

from ...errors import UserError
from ...progress import SILENT, Progress
from ...registry import option
from ..graph import ChannelGroup, PruningGraph
from .analytic import LayerCosts
from .base import COST_MODELS
from .latency_table import LatencyTable, LayerShape, layer_shapes

ALLOCATE_PER = ("auto", "ms", "macs")
CHECK_CALLS = 3  # separate timing calls per check (see LatencyCost.compare)


class Timing(NamedTuple):
    """A latency check: the ratio it settles on, that call's ms, and every call's ratio (their spread is
    how far one call can be trusted on this machine; the in-call noise does not show it)."""

    ratio: float
    ms: float
    calls: tuple[float, ...]

    def spread(self) -> float:
        """Largest minus smallest call ratio, relative to the ratio kept."""
        return (max(self.calls) - min(self.calls)) / self.ratio if self.ratio else 0.0


@COST_MODELS.register
@dataclass
class LatencyCost:
    name = "latency"
    description = "measured milliseconds on --runtime (per-layer tables, then verified by timing)"
    verified = True  # the pipeline checks its allocations by measurement

    model: nn.Module
    example: torch.Tensor
    groups: list[ChannelGroup]
    runtime: str = option("litert", "runtime the latency is measured on (see `mobileprune bench --help`)")
    threads: int = option(1, "threads the runtime uses")
    precision: str = option("fp32", "fp32, fp16 or int8 (the file the app will bundle)")
    cache_dir: str = option("", "where latency tables are kept (default ~/.cache/mobileprune/latency)")
    device: str = option("", "adb or adb:SERIAL: time on an Android phone with benchmark_model instead")
    benchmark_binary: str = option("", "benchmark_model: a local file to push, or its path on the phone")
    cpu_mask: str = option("", "taskset mask on the phone, e.g. f0 for the big cores")
    allocate_per: str = option(
        "auto", "damage per: ms (the latency tables), macs, or auto (both, measured; less predicted damage wins)"
    )
    probe: Any = None  # a LatencyProbe; default: this machine, `runtime` (or the phone, with `device`)
    progress: Progress = SILENT
    metric: str = field(init=False, default="latency")

    @staticmethod
    def check(options: Mapping[str, Any]) -> None:
        """Before any work: the runtime exists, is installed, and writes files of that precision."""
        from ...bench.probe import check_runtime

        check_runtime(options.get("runtime", "litert"), options.get("threads", 1), options.get("precision", "fp32"))
        if options.get("allocate_per", "auto") not in ALLOCATE_PER:
            raise UserError(f"--allocate-per must be one of {', '.join(ALLOCATE_PER)}, not '{options['allocate_per']}'")

    def __post_init__(self) -> None:
        if self.probe is None:
            from ...bench.probe import PhoneProbe, RuntimeProbe

            if self.device:
                binary, mask = self.benchmark_binary or None, self.cpu_mask or None
                self.probe = PhoneProbe(self.device, binary, mask, self.threads, self.precision)
            else:
                self.probe = RuntimeProbe(self.runtime, self.threads, self.precision)
        self.costs = LayerCosts(self.model, self.example, self.groups)
        touched = {m.module for g in self.groups for m in g.members}
        self.shapes: dict[str, LayerShape] = layer_shapes(self.model, self.example, touched)
        self.table = LatencyTable(self.probe, self.cache_dir or None)
        self.table.ensure(self.shapes.values(), self.progress)
        self._start_model = copy.deepcopy(self.model).eval()
        self.progress.log(f"timing the unpruned and a half-width model on {self.probe.key()['runtime']}")
        half = {g.name: len(g.units) // 16 * 8 for g in self.groups}  # about half, in multiples of 8
        first, second, half_ms = self.probe.time([self.model, self.model, self._pruned_copy(half)], self.example)
        self.whole_ms = (first + second) / 2
        self.noise = abs(first / second - 1)  # the model against itself, interleaved
        # what the tables miss (adds, pooling, per-inference overhead) partly scales with the layers, partly
        # not: two whole-model measurements fit latency = offset + scale · (sum of the layers' table times)
        full, halved = self._layers_ms({}), self._layers_ms(half)
        self.scale = (self.whole_ms - half_ms) / (full - halved) if full - halved > 1e-9 else 1.0
        if not 0 < self.scale < 10:
            self.scale = 1.0
        self.fixed_ms = self.whole_ms - self.scale * full
        self._start_ms = self.whole_ms
        self._reference = self._start_model  # what measured ratios are taken against

    def for_pruned(self, model: nn.Module, example: torch.Tensor, groups: list[ChannelGroup]) -> LatencyCost:
        """The same latency model for `model`, this model with channels removed (a later `--rounds` round).

        Nothing is timed: a pruned layer is the unpruned layer at fewer channels, which its table already
        predicts, and the whole-model calibration (offset, scale) still holds. `measure` times against the
        *unpruned* model and converts to a share of `model`'s predicted latency, so the rounds' errors do not
        multiply. A fresh cost model would time every narrower layer and the model again, round after round.
        """
        later = copy.copy(self)
        later.model, later.example, later.groups = model, example, groups
        later.costs = LayerCosts(model, example, groups)
        later._start_model = copy.deepcopy(model).eval()
        later._start_ms = later.predict({})
        return later

    def _layers_ms(self, removed: Mapping[str, int], names=None) -> float:
        widths = self.costs.channels_after(removed, names if names is not None else self.shapes)
        return sum(self.table.ms(self.shapes[n], cin, cout) for n, (cin, cout) in widths.items() if n in self.shapes)

    def baseline(self) -> float:
        """Milliseconds of the model this cost model prunes: measured when unpruned, predicted after a round."""
        return self._start_ms

    def predict(self, removed: Mapping[str, int]) -> float:
        return self.fixed_ms + self.scale * self._layers_ms(removed)

    def predict_model(self, pruned: nn.Module) -> float:
        """Predicted ms of `pruned`: this cost model's model with channels removed by any tool, its layer names
        kept (Torch-Pruning edits layers in place). Layer widths are read off the modules, so anchors pruned
        elsewhere are held to the same tables as mobileprune's own allocations."""
        modules = dict(pruned.named_modules())
        total = 0.0
        for name, shape in self.shapes.items():
            layer = modules.get(name)
            if isinstance(layer, nn.Conv2d):
                total += self.table.ms(shape, layer.in_channels, layer.out_channels)
            elif isinstance(layer, nn.Linear):
                total += self.table.ms(shape, layer.in_features, layer.out_features)
            else:
                raise ValueError(f"layer '{name}' of the latency tables is not a conv or linear in the pruned model")
        return self.fixed_ms + self.scale * total

    def saving(self, removed: Mapping[str, int], group: str, extra: int) -> float:
        names = [n for n in self.costs.groups[group].modules() if n in self.shapes]
        after = {**removed, group: removed.get(group, 0) + extra}
        return self.scale * (self._layers_ms(removed, names) - self._layers_ms(after, names))

    def describe(self) -> dict[str, Any]:
        return {
            **self.probe.key(),
            "table": str(self.table.path),
            "layers_timed_now": self.table.measured_now,
            "unpruned_ms": round(self.whole_ms, 4),
            "offset_ms": round(self.fixed_ms, 4),
            "scale": round(self.scale, 4),
            "noise": round(self.noise, 4),
        }

    def preferred_multiple(self) -> tuple[int, str]:
        """The channel multiple this runtime is fastest at (`--round-to auto`), measured, with why.

        On the dense layer the tables say is slowest, 17 output widths (two multiples of 16 apart) are timed
        side by side. A runtime that pads channels to a tile of m charges a width between two multiples of m
        like the next one, or more (a remainder path): its time sits most of the way from the straight line
        through the multiples up to the next multiple's. The largest m where it does is the answer; with
        none, the default 8 stays. The slowest layer, not a vote of several: on XNNPACK the remainder costs
        most at large spatial sizes, where most of the time goes, and little on 7×7 maps.
        """
        dense = [n for n, shape in self.shapes.items() if shape.kind == "conv" and shape.cout >= 32]
        if not dense:
            return 8, "no dense layer of 32 or more channels to measure; kept the default 8"
        name = max(dense, key=lambda n: self.table.ms(self.shapes[n], self.shapes[n].cin, self.shapes[n].cout))
        shape = self.shapes[name]
        top = shape.cout // 16 * 16
        multiple, share = _padded_multiple(self.table.widths(shape, list(range(top - 16, top + 1)), self.progress))
        if multiple == 1:
            return 8, f"on {name}, no channel multiple was measurably faster; kept the default 8"
        return multiple, (
            f"on {name}, widths between multiples of {multiple} cost {share:.0%} of the way to the next multiple: "
            f"the runtime pads channels to multiples of {multiple}"
        )

    def measure(self, removed: Mapping[str, int]) -> Timing:
        """Measured latency of the model pruned as `removed` as a share of `baseline()`, and its ms.

        Timed interleaved against the unpruned model (the ratio the user asked for); after a round, that
        ratio is converted to a share of the model being pruned now through the predicted latency it started
        the round at. Latency does not depend on which channels go, so the copy loses each group's last units.
        """
        timed = self.compare(self._reference, self._pruned_copy(removed))
        share = self.whole_ms / self._start_ms
        return Timing(timed.ratio * share, timed.ms, tuple(r * share for r in timed.calls))

    def compare(self, original: nn.Module, final: nn.Module) -> Timing:
        """Measured ratio final / original and the final model's ms: the median of CHECK_CALLS interleaved
        timing calls (the ratio of the call with the median ratio, and its ms), with every call's ratio.

        Interleaving cancels drift within a call, and the noise (the model against itself) is taken within a
        call; but each call opens new runtime sessions, and the ratio of the same two models moves between
        calls by more than that noise. A check decides whether an allocation is accepted, so one unlucky
        call would be kept by the correction loop and show up in every later measurement.
        """
        calls = [self.probe.time([original, final], self.example, careful=True) for _ in range(CHECK_CALLS)]
        base, ms = sorted(calls, key=lambda call: call[1] / call[0])[len(calls) // 2]
        return Timing(ms / base, ms, tuple(final_ms / base_ms for base_ms, final_ms in calls))

    def _pruned_copy(self, removed: Mapping[str, int]) -> nn.Module:
        """A copy of the model being pruned without each group's last `removed` units."""
        pruned = copy.deepcopy(self._start_model)
        graph = PruningGraph(pruned, self.example, [])
        for group in self.groups:
            units = removed.get(group.name, 0)
            if units:
                order = torch.arange(group.channels, 0, -1, dtype=torch.float32)
                graph.prune(group.name, group.channels_to_remove(order, units))
        return pruned


def _padded_multiple(times: Mapping[int, float]) -> tuple[int, float]:
    """The largest multiple (16, 8, 4) whose in-between widths cost at least half the way from the straight
    line through the multiples up to the next multiple (median over those widths), and that median; 1 if none."""
    widths = sorted(times)
    for multiple in (16, 8, 4):
        fractions = []
        for w in widths:
            if w % multiple:
                low, high = w // multiple * multiple, (w // multiple + 1) * multiple
                line = times[low] + (times[high] - times[low]) * (w - low) / multiple
                step = times[high] - line
                fractions.append((times[w] - line) / step if step > 1e-9 else 0.0)
        fractions.sort()
        median = fractions[len(fractions) // 2]
        if median >= 0.5:
            return multiple, median
    return 1, 0.0
