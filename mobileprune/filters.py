"""Per-layer filter L1 norms, and the picture a practitioner reads them from (`plot-filters`)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from .plotting import pyplot, save_figure


def filter_norms(model: nn.Module) -> dict[str, torch.Tensor]:
    """L1 norm of every output filter of every conv, in model order (depthwise convs included)."""
    return {
        name: m.weight.detach().abs().flatten(1).sum(1).cpu()
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
    }


def plot_filter_norms(norms: dict[str, torch.Tensor], path: str | Path, title: str = "") -> Path:
    """One column of dots per conv layer (log scale): a layer with dead filters has dots at the floor."""
    import numpy as np

    plt = pyplot()

    names = list(norms)
    fig, ax = plt.subplots(figsize=(max(8, 0.22 * len(names)), 5))
    floor = min((float(n[n > 0].min()) for n in norms.values() if (n > 0).any()), default=1e-3) / 10
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        values = norms[name].numpy().clip(min=floor)
        ax.scatter(i + rng.uniform(-0.25, 0.25, len(values)), values, s=3, alpha=0.5)
    ax.set_yscale("log")
    ax.axhline(floor, color="red", lw=0.8, ls=":", label="all-zero filters are drawn here")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set_ylabel("filter L1 norm")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
