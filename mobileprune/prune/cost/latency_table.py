"""Per-layer latency tables: each conv and linear timed alone on the runtime at a few widths (NetAdapt-style).

A layer is described by what its latency depends on: kind (dense, depthwise, linear), kernel, stride,
padding, input height and width, and its channel counts. Each distinct layer is timed as a one-layer
model at its full width and at about half of its input and output channels (rounded to 8), 2×2 points
for dense layers, 2 for depthwise ones (input = output), and its latency at any width is the bilinear
fit through them: a·cin·cout + b·cin + c·cout + d, the shape of a GEMM's cost plus per-channel overheads.

Measurements are cached in a JSON file per probe key (runtime, its version, precision, threads, machine),
written after every layer, so a second run on the same architecture (or any other with the same layers)
costs seconds and a killed profile resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ...atomic import write_json
from ...progress import SILENT, Progress
from ..graph import is_depthwise
from .analytic import forward_with_hooks

TABLE_FORMAT = 1


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mobileprune" / "latency"


@dataclass(frozen=True)
class LayerShape:
    """Everything a layer's latency depends on, except its channel counts."""

    kind: str  # "conv", "dwconv", "linear"
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    height: int  # input spatial size (1 for linears)
    width: int
    cin: int  # unpruned
    cout: int

    def key(self) -> str:
        return (
            f"{self.kind} k{self.kernel[0]}x{self.kernel[1]} s{self.stride[0]}x{self.stride[1]} "
            f"p{self.padding[0]}x{self.padding[1]} {self.height}x{self.width} {self.cin}->{self.cout}"
        )

    def points(self) -> list[tuple[int, int]]:
        """The (cin, cout) widths it is timed at."""
        ins, outs = _levels(self.cin), _levels(self.cout)
        if self.kind == "dwconv":
            return [(c, c) for c in outs]
        return sorted({(i, o) for i in ins for o in outs}, reverse=True)

    def module(self, cin: int, cout: int) -> tuple[nn.Module, torch.Tensor]:
        """A one-layer model at this width (conv + ReLU6, the activation mobile kernels fuse), and its input."""
        if self.kind == "linear":
            return nn.Linear(cin, cout), torch.randn(1, cin)
        groups = cout if self.kind == "dwconv" else 1
        conv = nn.Conv2d(cin, cout, self.kernel, self.stride, self.padding, groups=groups)
        return nn.Sequential(conv, nn.ReLU6()).eval(), torch.randn(1, cin, self.height, self.width)


def _levels(channels: int) -> list[int]:
    half = max(8, round(channels / 2 / 8) * 8)
    return [channels] if half >= channels else [channels, half]


def layer_shapes(model: nn.Module, example: torch.Tensor, names: Iterable[str]) -> dict[str, LayerShape]:
    """The shape of each named conv/linear as it runs on `example` (one forward pass)."""
    wanted = set(names)
    shapes: dict[str, LayerShape] = {}

    def make_hook(name: str):
        def hook(module, args, output):
            x = args[0]
            if isinstance(module, nn.Linear):
                shapes[name] = LayerShape(
                    "linear", (1, 1), (1, 1), (0, 0), 1, 1, module.in_features, module.out_features
                )
                return
            kind = "dwconv" if is_depthwise(module) else "conv"
            padding = module.padding if isinstance(module.padding, tuple) else (0, 0)
            shapes[name] = LayerShape(
                kind,
                tuple(module.kernel_size),
                tuple(module.stride),
                tuple(padding),
                int(x.shape[2]),
                int(x.shape[3]),
                module.in_channels,
                module.out_channels,
            )

        return hook

    hooks = [
        (m, make_hook(n))
        for n, m in model.named_modules()
        if n in wanted and (isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and _plain_conv(m)))
    ]
    forward_with_hooks(model, example, hooks)
    return shapes


def _plain_conv(conv: nn.Conv2d) -> bool:
    """Dense or depthwise, no dilation or string padding: what the table's one-layer models reproduce."""
    return (conv.groups == 1 or is_depthwise(conv)) and conv.dilation == (1, 1) and not isinstance(conv.padding, str)


class LatencyTable:
    """Measured one-layer latencies for a probe, cached on disk, and the fit that predicts any width."""

    def __init__(self, probe, cache_dir: str | Path | None = None):
        self.probe = probe
        key = probe.key()
        digest = hashlib.sha256(json.dumps([TABLE_FORMAT, key], sort_keys=True).encode()).hexdigest()[:16]
        self.path = Path(cache_dir or default_cache_dir()) / f"{key['runtime']}-{digest}.json"
        self.key = key
        self.entries: dict[str, dict[str, float]] = {}
        self.side_by_side: dict[str, dict[str, float]] = {}  # shape → output width → ms, from one timing call
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                if data.get("format") == TABLE_FORMAT and data.get("key") == key:
                    self.entries = data["layers"]
                    self.side_by_side = data.get("side_by_side", {})
            except (OSError, ValueError, KeyError):
                self.entries, self.side_by_side = {}, {}  # a damaged cache is measured again, not trusted
        self.measured_now = 0

    def ensure(self, shapes: Iterable[LayerShape], progress: Progress = SILENT) -> None:
        """Time every (shape, width) point not in the cache yet, saving after each layer."""
        missing = {s.key(): s for s in shapes if not self._complete(s)}
        if not missing:
            return
        points = sum(len(s.points()) for s in missing.values())
        with progress.task(f"latency table: timing {len(missing)} layers on {self.key['runtime']}", points) as bar:
            for key, shape in missing.items():
                entry = self.entries.setdefault(key, {})
                for cin, cout in shape.points():
                    name = f"{cin},{cout}"
                    if name in entry:
                        bar.advance()
                        continue
                    module, example = shape.module(cin, cout)
                    entry[name] = self.probe.time([module], example)[0]
                    self.measured_now += 1
                    bar.advance()
                self.save()

    def widths(self, shape: LayerShape, widths: list[int], progress: Progress = SILENT) -> dict[int, float]:
        """Milliseconds of `shape` at each output width (full input width), timed side by side and cached.

        Neighbouring widths differ by a few percent, about as much as a machine's speed moves between
        separate timing calls, so they are timed interleaved in one careful call (and kept apart from the
        table's points, which are timed one call each).
        """
        cached = self.side_by_side.get(shape.key(), {})
        if all(str(w) in cached for w in widths):
            return {w: cached[str(w)] for w in widths}
        layers = [shape.module(shape.cin, w) for w in widths]
        with progress.task(f"timing {len(widths)} widths of one layer side by side", 1) as bar:
            times = self.probe.time([module for module, _ in layers], layers[0][1], careful=True)
            bar.advance()
        self.measured_now += len(widths)
        self.side_by_side[shape.key()] = {str(w): t for w, t in zip(widths, times, strict=True)}
        self.save()
        return dict(zip(widths, times, strict=True))

    def _complete(self, shape: LayerShape) -> bool:
        entry = self.entries.get(shape.key(), {})
        return all(f"{i},{o}" in entry for i, o in shape.points())

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(
            self.path,
            {"format": TABLE_FORMAT, "key": self.key, "layers": self.entries, "side_by_side": self.side_by_side},
        )

    def ms(self, shape: LayerShape, cin: int, cout: int) -> float:
        """Predicted milliseconds of `shape` at `cin` → `cout` channels (bilinear through the measured points)."""
        entry = self.entries[shape.key()]
        points = [(i, o, entry[f"{i},{o}"]) for i, o in shape.points()]
        if shape.kind == "dwconv":
            return _line([(o, t) for _, o, t in points], cout)
        ins = sorted({i for i, _, _ in points})
        outs = sorted({o for _, o, _ in points})
        if len(ins) == 1:
            return _line([(o, t) for _, o, t in points], cout)
        if len(outs) == 1:
            return _line([(i, t) for i, _, t in points], cin)
        at = {(i, o): t for i, o, t in points}
        low = _line([(o, at[(ins[0], o)]) for o in outs], cout)  # along cout at each measured cin
        high = _line([(o, at[(ins[1], o)]) for o in outs], cout)
        return _line([(ins[0], low), (ins[1], high)], cin)


def _line(points: list[tuple[int, float]], x: int) -> float:
    """The straight line through two points (or the one value), evaluated at x; never below zero."""
    if len(points) == 1:
        return points[0][1]
    (x0, y0), (x1, y1) = sorted(points)[:2]
    return max(0.0, y0 + (y1 - y0) * (x - x0) / (x1 - x0))
