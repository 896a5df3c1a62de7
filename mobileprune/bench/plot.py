"""`bench --plot`: FPS per runtime and thread count, one bar per model, as a PNG."""

from __future__ import annotations

from pathlib import Path

from ..plotting import pyplot, save_figure
from .measure import BenchResult


def plot_fps(result: BenchResult, path: str | Path) -> Path:
    import numpy as np

    plt = pyplot()

    groups = sorted({(m.runtime, m.file, m.threads) for m in result.measurements})
    models = list(dict.fromkeys(m.model for m in result.measurements))
    fps = {(m.runtime, m.file, m.threads, m.model): m.stats.fps for m in result.measurements}
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(groups) * max(len(models), 1) / 2 + 2), 4.5))
    x = np.arange(len(groups))
    for i, model in enumerate(models):
        heights = [fps.get((*g, model), 0.0) for g in groups]
        bars = ax.bar(x + (i - (len(models) - 1) / 2) * width, heights, width, label=model)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(x, [f"{r}\n{f}\n{t} thread{'s' if t > 1 else ''}" for r, f, t in groups], fontsize=8)
    ax.set_ylabel("FPS (1000 / median latency)")
    ax.set_title("Inference speed, batch 1")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
