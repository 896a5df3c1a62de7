"""Every PNG mobileprune draws, on matplotlib without a display.

`plot_fps` (bench --plot), `plot_pareto` (sweep's pareto.png), `plot_filter_norms` (plot-filters),
`plot_pie_grid` and `plot_class_damage` (compare), `plot_channels` and `plot_retrain_check` (the HTML report). Colours
come from matplotlib's colour-blind-safe `tableau-colorblind10` cycle.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

if TYPE_CHECKING:
    from ..bench.measure import BenchResult
    from ..sweep import SweepPoint


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (servers and CI have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.style.use("tableau-colorblind10")
    return plt


def save_figure(fig, path: str | Path, top: float = 1.0) -> Path:
    """Write `fig` as a PNG; `top` < 1 keeps that share of the height for a suptitle."""
    fig.tight_layout(rect=(0, 0, 1, top))
    path = Path(path)
    fig.savefig(path, dpi=120)
    pyplot().close(fig)
    return path


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


def plot_pareto(points: Sequence[SweepPoint], fronts: dict[str, list[SweepPoint]], path: Path) -> Path:
    """Accuracy against parameter and MAC ratios, one line per method; `fronts[ratio]` marked."""
    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, ratio, label in ((axes[0], "params_ratio", "parameters kept"), (axes[1], "macs_ratio", "MACs kept")):
        for criterion in dict.fromkeys(p.criterion for p in points):
            mine = sorted(
                (p for p in points if p.criterion == criterion and p.accuracy is not None),
                key=lambda p: getattr(p, ratio),
            )
            ax.plot([getattr(p, ratio) for p in mine], [p.accuracy for p in mine], "o-", label=criterion)
        front = fronts[ratio]
        ax.plot([getattr(p, ratio) for p in front], [p.accuracy for p in front], "k--", lw=1, label="Pareto front")
        ax.scatter(
            [getattr(p, ratio) for p in front], [p.accuracy for p in front], s=120, facecolors="none", edgecolors="k"
        )
        before = next((p.top1_before for p in points if p.top1_before is not None), None)
        if before is not None:
            ax.axhline(before, color="grey", lw=0.8, ls=":", label="unpruned")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("top-1 accuracy")
    axes[1].legend(fontsize=8)
    fig.suptitle("accuracy vs size (same retraining budget per point)")
    return save_figure(fig, path)


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


def plot_pie_grid(rows: Sequence[dict], path: str | Path, total: int, images: int) -> Path:
    """Thumbnails of the worst pruning-identified exemplars, each with its label and both predictions."""
    from PIL import Image

    plt = pyplot()
    columns = 4
    count = max(len(rows), 1)
    lines = (count + columns - 1) // columns
    fig, axes = plt.subplots(lines, columns, figsize=(2.6 * columns, 3.3 * lines + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows, strict=False):
        with Image.open(row["file"]) as img:
            img = img.convert("RGB")
            side = min(img.size)
            left, top = (img.width - side) // 2, (img.height - side) // 2
            ax.imshow(img.crop((left, top, left + side, top + side)).resize((160, 160)))
        ax.set_title(
            f"label: {_short(row['label'])}\nbefore: {_short(row['before'])}\nafter: {_short(row['after'])}",
            fontsize=8,
            loc="left",
        )
    if not rows:
        axes.flat[0].text(0.5, 0.5, "no pruning-identified exemplars", ha="center", va="center")
    fig.suptitle(f"Pruning-identified exemplars: {total} of {images} images (worst {len(rows)} shown)", fontsize=10)
    return save_figure(fig, path, top=1 - 0.35 / fig.get_figheight())


def plot_class_damage(classes: Sequence, path: str | Path, shown: int = 20) -> Path:
    """Top-1 before and after of the most damaged classes (`ClassDamage` rows, worst first)."""
    import numpy as np

    plt = pyplot()
    rows = list(classes)[:shown]
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(rows) + 1.4))
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [r.top1_before for r in rows], 0.4, label="before")
    ax.barh(y + 0.2, [r.top1_after for r in rows], 0.4, label="after")
    ax.set_yticks(y, [f"{_short(r.name)} (n={r.images}{', noise' if r.too_few else ''})" for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.25)
    ax.set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_xlabel("top-1 of the class")
    ax.set_title(f"The {len(rows)} most damaged classes")
    ax.legend(fontsize=8, loc="upper right")  # in the space right of 1.0, where no bar reaches
    return save_figure(fig, path)


def _short(text: str, width: int = 26) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def plot_channels(groups: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Channels of every group (producer layer) before and after pruning, in network order."""
    import numpy as np

    plt = pyplot()
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(groups) + 2), 3.6))
    ax.bar(x, [g["before"] for g in groups], 0.8, label="before", alpha=0.45)
    ax.bar(x, [g["after"] for g in groups], 0.5, label="after")
    ax.set_xticks(x, [str(i) for i in range(len(groups))], fontsize=6)
    ax.set_xlabel("group (producer layer, input to output)")
    ax.set_ylabel("channels")
    ax.set_title(title or "Channels kept per group")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_retrain_check(check: dict, path: str | Path) -> Path:
    """The validation loss before retraining (epoch 0) and after every epoch, with the epoch that was kept."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    draw_retrain_check(ax, check, textwrap.fill(check["measure"], 70))
    return save_figure(fig, path)


def draw_retrain_check(ax, check: dict, title: str) -> None:
    """`plot_retrain_check`'s curve on matplotlib axes `ax` (benchmarks put several side by side)."""
    epochs = [0.0] + [h["epoch"] for h in check["history"]]
    losses = [check["before"]["loss"]] + [h["loss"] for h in check["history"]]
    ax.plot(epochs, losses, marker="o", markersize=3, label="validation loss")
    kept = check["epoch"] if check["kept"] == "retrained" else 0.0
    at = (kept, losses[epochs.index(kept)])
    ax.scatter(*at, s=90, facecolors="none", edgecolors="C1", zorder=3)
    label = f"kept: epoch {kept:g}" if kept else "kept: the model before retraining"
    ax.annotate(label, at, textcoords="offset points", xytext=(6, 8), fontsize=8, color="C1")
    ax.set_xlabel("epoch (0: before retraining)")
    ax.set_ylabel("loss (lower is better)")
    ax.set_title(title, fontsize=9)
