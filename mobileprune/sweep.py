"""`sweep`: every (criterion, target) pair shrunk with the same retraining budget, then compared.

Each finished point is written to `OUT/points/` at once (atomically), and a point already there is never
recomputed: a killed sweep is resumed by running the same command again, and a later run with more
criteria or targets adds to the same summary. At the end `sweep.csv`,
`sweep.json` and `pareto.png` summarise the points: accuracy against parameter and MAC ratios, one line
per criterion, the Pareto frontier marked, and the score (accuracy + (1 - kept parameter ratio)) / 2
that the background reports rank by.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .criteria import get_criterion
from .data import DataSplits, ImageSet
from .errors import UserError
from .loading import LoadedModel
from .plotting import pyplot, save_figure
from .progress import SILENT, Progress
from .shrink import ShrinkConfig, ShrinkResult, shrink


@dataclass
class SweepPoint:
    criterion: str
    target: float
    by: str
    params_ratio: float
    macs_ratio: float
    top1_before: float | None
    top1_after_pruning: float | None
    top1_after_retraining: float | None
    wall_s: float

    @property
    def accuracy(self) -> float | None:
        """The model's final accuracy: after retraining when there was any, else after pruning."""
        if self.top1_after_retraining is not None:
            return self.top1_after_retraining
        return self.top1_after_pruning

    @property
    def score(self) -> float | None:
        """(accuracy + sparsity) / 2, sparsity = 1 - kept parameter ratio."""
        return None if self.accuracy is None else (self.accuracy + 1 - self.params_ratio) / 2

    def to_json(self) -> dict:
        return {**asdict(self), "accuracy": self.accuracy, "score": self.score}


def point_file(out: Path, criterion: str, target: float) -> Path:
    return out / "points" / f"{criterion}@{target:g}.json"


def run_sweep(
    load: Callable[[], LoadedModel],
    targets: Sequence[float],
    criteria: Sequence[str],
    config: ShrinkConfig,
    out: str | Path,
    data: DataSplits | None = None,
    eval_data: ImageSet | None = None,
    progress: Progress = SILENT,
    shrink_fn: Callable[..., ShrinkResult] = shrink,
) -> list[SweepPoint]:
    """Shrink a fresh copy of the model for every (criterion, target); finished points are kept."""
    out = Path(out)
    (out / "points").mkdir(parents=True, exist_ok=True)
    points: list[SweepPoint] = []
    pairs = [(c, t) for c in criteria for t in targets]
    for i, (criterion, target) in enumerate(pairs, 1):
        path = point_file(out, criterion, target)
        if path.exists():
            points.append(_read_point(path))
            progress.log(f"[{i}/{len(pairs)}] {criterion} @ {target:g}: done before, kept")
            continue
        progress.log(f"[{i}/{len(pairs)}] {criterion} @ {target:g} ...")
        started = time.time()
        point_config = method_config(config, criterion, target)
        result = shrink_fn(load(), point_config, data, eval_data, progress)
        point = _point(result.report, criterion, target, config.by, time.time() - started)
        _write_atomically(path, point.to_json())
        points.append(point)
        progress.log(f"    params {point.params_ratio:.4f}, MACs {point.macs_ratio:.4f}, top-1 {_fmt(point.accuracy)}")
    # the folder is the experiment: points from earlier invocations (other criteria or targets) count too
    known = {(p.criterion, p.target) for p in points}
    for path in sorted((out / "points").glob("*.json")):
        earlier = _read_point(path)
        if (earlier.criterion, earlier.target) not in known and earlier.by == config.by:
            points.append(earlier)
    write_summary(points, out)
    return points


def method_config(config: ShrinkConfig, method: str, target: float) -> ShrinkConfig:
    """A criterion name, or a schedule that decides amounts itself (`greedy`, with l1 inside groups)."""
    from .schedules import SCHEDULES, get_schedule

    if method in SCHEDULES and get_schedule(method).decides_amounts:
        return replace(config, schedule=method, criterion="l1", target=target, sparsity_train=0)
    # sparsity training belongs to the criteria that rank by the scales it trains (bn, sss)
    sparsity = config.sparsity_train if get_criterion(method).sparsity_training != "unused" else 0
    return replace(config, criterion=method, target=target, sparsity_train=sparsity)


def _point(report: dict, criterion: str, target: float, by: str, wall: float) -> SweepPoint:
    acc = report.get("accuracy", {})

    def top1(key: str) -> float | None:
        return acc[key]["top1"] if acc.get(key) else None

    return SweepPoint(
        criterion,
        target,
        by,
        report["ratios"]["params"],
        report["ratios"]["macs"],
        top1("before"),
        top1("after_pruning"),
        top1("after_retraining"),
        round(wall, 1),
    )


def _read_point(path: Path) -> SweepPoint:
    try:
        data = json.loads(path.read_text())
        return SweepPoint(**{k: data[k] for k in SweepPoint.__dataclass_fields__})
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path} is not a sweep point ({exc}); delete it to recompute that point") from exc


def _write_atomically(path: Path, data: dict) -> None:
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)  # a kill leaves the old state or the new, never half a file


def pareto_front(points: Sequence[SweepPoint], ratio: str = "params_ratio") -> list[SweepPoint]:
    """Points no other point beats on both a smaller `ratio` and a higher accuracy."""
    scored = [p for p in points if p.accuracy is not None]
    front = []
    for p in scored:
        dominated = any(
            getattr(q, ratio) <= getattr(p, ratio)
            and q.accuracy >= p.accuracy
            and (getattr(q, ratio) < getattr(p, ratio) or q.accuracy > p.accuracy)
            for q in scored
        )
        if not dominated:
            front.append(p)
    return sorted(front, key=lambda p: getattr(p, ratio))


def write_summary(points: Sequence[SweepPoint], out: Path) -> None:
    rows = [p.to_json() for p in points]
    with open(out / "sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["criterion"])
        writer.writeheader()
        writer.writerows(rows)
    scored = [p for p in points if p.score is not None]
    best = max(scored, key=lambda p: p.score) if scored else None
    summary = {
        "points": rows,
        "best_score": best.to_json() if best else None,
        "pareto_params": [(p.criterion, p.target) for p in pareto_front(points, "params_ratio")],
        "pareto_macs": [(p.criterion, p.target) for p in pareto_front(points, "macs_ratio")],
        "winner_per_target": _winners(points),
    }
    (out / "sweep.json").write_text(json.dumps(summary, indent=2) + "\n")
    if scored:
        plot_pareto(points, out / "pareto.png")


def _winners(points: Sequence[SweepPoint]) -> dict[str, dict]:
    """Best accuracy at each target, and its margin over the runner-up."""
    out = {}
    for target in sorted({p.target for p in points}, reverse=True):
        ranked = sorted((p for p in points if p.target == target and p.accuracy is not None), key=lambda p: -p.accuracy)
        if ranked:
            margin = ranked[0].accuracy - ranked[1].accuracy if len(ranked) > 1 else None
            out[f"{target:g}"] = {"criterion": ranked[0].criterion, "accuracy": ranked[0].accuracy, "margin": margin}
    return out


def plot_pareto(points: Sequence[SweepPoint], path: Path) -> Path:
    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, ratio, label in ((axes[0], "params_ratio", "parameters kept"), (axes[1], "macs_ratio", "MACs kept")):
        for criterion in dict.fromkeys(p.criterion for p in points):
            mine = sorted(
                (p for p in points if p.criterion == criterion and p.accuracy is not None),
                key=lambda p: getattr(p, ratio),
            )
            ax.plot([getattr(p, ratio) for p in mine], [p.accuracy for p in mine], "o-", label=criterion)
        front = pareto_front(points, ratio)
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


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"
