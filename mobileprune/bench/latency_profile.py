"""`mobileprune profile`: where the time goes, layer by layer, on the app's runtime, and how well it is predicted.

Builds (or reads from the cache) the `--by latency` tables for a model, then sets each layer's measured
milliseconds beside its share of the MACs: the picture that shows why a MAC target is not a speed target.
With `variants`, random pruned copies are timed against the prediction, so the latency model's error is
measured, not assumed. It is measured on what `--by latency` uses: each variant's share of the unpruned
model's latency, timed interleaved with it. Milliseconds from separate calls also carry how much the
machine's speed moved since the calibration (a VM's drifts by several percent over minutes), which is
not the model's error and which no target depends on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..models import classifier_module
from ..progress import SILENT, Progress
from ..prune.cost import COST_MODELS
from ..prune.graph import PruningGraph


@dataclass
class LayerTime:
    layer: str
    shape: str
    ms: float
    macs: int


@dataclass
class LatencyProfile:
    model: str
    key: dict[str, str]
    unpruned_ms: float
    offset_ms: float  # latency ≈ offset + scale · Σ table times (fitted on two whole-model timings)
    scale: float
    noise: float
    layers: list[LayerTime]
    variants: list[dict[str, float]] = field(default_factory=list)  # predicted vs measured share of unpruned
    round_to: int = 8  # the variants' channels are removed in multiples of this

    def errors(self) -> list[float]:
        return [abs(v["predicted"] / v["measured"] - 1) for v in self.variants]

    def to_json(self) -> dict[str, Any]:
        errors = sorted(self.errors())
        return {
            "model": self.model,
            **self.key,
            "unpruned_ms": round(self.unpruned_ms, 4),
            "offset_ms": round(self.offset_ms, 4),
            "scale": round(self.scale, 4),
            "noise": round(self.noise, 4),
            "layers": [layer.__dict__ for layer in self.layers],
            "variants": self.variants,
            "round_to": self.round_to,
            "median_error": round(errors[len(errors) // 2], 4) if errors else None,
            "worst_error": round(errors[-1], 4) if errors else None,
        }


def profile_latency(
    loaded,
    options: dict[str, Any],
    variants: int = 0,
    seed: int = 0,
    probe=None,
    progress: Progress = SILENT,
    round_to: int = 8,
) -> LatencyProfile:
    """Per-layer latency of `loaded.model` on the runtime in `options`, and `variants` predicted-vs-measured checks
    on copies with channels removed in multiples of `round_to` (as `shrink --round-to` would)."""
    model, size = loaded.model.eval(), loaded.spec.input_size
    example = torch.randn(1, 3, size, size)
    classifier = classifier_module(model, loaded.spec)
    graph = PruningGraph(model, example, [classifier] if classifier is not None else [])
    offered = {"model": model, "example": example, "groups": graph.groups, "progress": progress}
    if probe is not None:
        offered["probe"] = probe
    cost = COST_MODELS.create("latency", offered=offered, **options)
    macs = cost.costs.macs_per_layer()
    layers = [
        LayerTime(name, shape.key(), round(cost.table.ms(shape, shape.cin, shape.cout), 5), macs.get(name, 0))
        for name, shape in cost.shapes.items()
    ]
    result = LatencyProfile(
        loaded.spec.arch,
        cost.probe.key(),
        cost.whole_ms,
        cost.fixed_ms,
        cost.scale,
        cost.noise,
        layers,
        round_to=round_to,
    )
    rng = random.Random(seed)
    with progress.task(f"timing {variants} random pruned variants", variants) as bar:
        for _ in range(variants):
            keep = rng.uniform(0.3, 0.9)
            removed = {
                g.name: min(
                    len(g.units) - 1, int(len(g.units) * (1 - keep) * rng.uniform(0.5, 1.5)) // round_to * round_to
                )
                for g in cost.groups
            }
            removed = {k: v for k, v in removed.items() if v > 0}
            timed = cost.measure(removed)
            predicted = cost.predict(removed) / cost.baseline()
            result.variants.append(
                {"predicted": round(predicted, 4), "measured": round(timed.ratio, 4), "measured_ms": round(timed.ms, 4)}
            )
            bar.advance()
    return result


def plot_profile(profile: LatencyProfile, path: str | Path) -> Path:
    """Two bars per layer: share of measured time and share of MACs; predicted-vs-measured beside it."""
    from ..reporting.plots import pyplot, save_figure

    plt = pyplot()
    panels = 2 if profile.variants else 1
    fig, axes = plt.subplots(1, panels, figsize=(13 if panels == 2 else 10, 4.8), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 1][:panels]})  # fmt: skip
    ax = axes[0][0]
    total_ms = sum(layer.ms for layer in profile.layers) or 1.0
    total_macs = sum(layer.macs for layer in profile.layers) or 1
    x = range(len(profile.layers))
    ax.bar([i - 0.2 for i in x], [100 * layer.ms / total_ms for layer in profile.layers], 0.4, label="share of time")
    ax.bar([i + 0.2 for i in x], [100 * layer.macs / total_macs for layer in profile.layers], 0.4,
           label="share of MACs")  # fmt: skip
    ax.set_xticks(list(x), [layer.layer for layer in profile.layers], rotation=90, fontsize=6)
    ax.set_ylabel("% of the layers' total")
    key = profile.key
    ax.set_title(
        f"{profile.model}: where the time goes on {key['runtime']} {key['precision']}, {key['threads']} thread(s) "
        f"({profile.unpruned_ms:.2f} ms)",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    if profile.variants:
        ax = axes[0][1]
        measured = [v["measured"] for v in profile.variants]
        predicted = [v["predicted"] for v in profile.variants]
        ax.scatter(measured, predicted, s=18)
        top = min(1.0, max(measured + predicted) * 1.05)
        ax.plot([0, top], [0, top], "k--", lw=1)
        errors = sorted(profile.errors())
        ax.set_title(f"random pruned variants: median error {errors[len(errors) // 2]:.1%}", fontsize=10)
        ax.set_xlabel("measured share of the unpruned latency")
        ax.set_ylabel("predicted share")
    return save_figure(fig, path)
