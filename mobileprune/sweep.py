"""`sweep`: every (method, target) pair shrunk or sparsified with the same retraining budget, then compared.

A method is a shrink criterion (l1, taylor, ...), the greedy schedule, or a sparsify method (magnitude,
gradual, lottery, obs, hybrid: target t means sparsity 1 - t of the sparsifiable weights); every point's
parameter ratio counts nonzero parameters, so structured and sparse points share the axes.

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
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from .artifacts import LoadedModel
from .atomic import write_json
from .errors import UserError
from .progress import SILENT, Progress
from .prune.config import ShrinkConfig
from .prune.criteria import CRITERIA
from .prune.pipeline import ShrinkResult, shrink
from .prune.report import ShrinkReport
from .prune.schedules import SCHEDULES
from .reporting.plots import plot_pareto
from .sparsify.config import SparsifyConfig
from .sparsify.methods import METHODS
from .sparsify.run import sparsify
from .train.data import DataSplits, ImageSet


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
        torch.manual_seed(config.seed)  # a random-weight model is built by load(): every point from the same one
        if criterion in METHODS:
            result = sparsify(load(), sparse_config(config, criterion, target), data, eval_data, progress)
        else:
            result = shrink_fn(load(), method_config(config, criterion, target), data, eval_data, progress)
        point = _point(result.report, criterion, target, config.by, time.time() - started)
        write_json(path, point.to_json())
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
    """A criterion name, or a schedule that decides amounts itself (`greedy`, with l1 inside groups).

    Criterion and schedule options go to the method only where it declares them (`--ucb-pulls` reaches
    `ucb`, not `l1`).
    """
    if method in SCHEDULES and SCHEDULES.get(method).decides_amounts:
        options = _declared(SCHEDULES, method, config.schedule_options)
        return replace(
            config,
            schedule=method,
            criterion="l1",
            criterion_options={},
            schedule_options=options,
            target=target,
            sparsity_train=0,
        )
    # sparsity training belongs to the criteria that rank by the scales it trains (bn, sss)
    sparsity = config.sparsity_train if CRITERIA.get(method).sparsity_training != "unused" else 0
    options = _declared(CRITERIA, method, config.criterion_options)
    return replace(config, criterion=method, criterion_options=options, target=target, sparsity_train=sparsity)


def sparse_config(config: ShrinkConfig, method: str, target: float) -> SparsifyConfig:
    """A sparsify method at sparsity 1 - `target`, with the shrink points' retraining settings."""
    return SparsifyConfig(
        sparsity=round(1 - target, 6),
        method=method,
        epochs=config.epochs,
        batch_size=config.batch_size,
        distill=config.distill,
        train=config.train,
        seed=config.seed,
        device=config.device,
        workers=config.workers,
    )


def check_method(config: ShrinkConfig, method: str, target: float) -> None:
    """Refuse an unknown method (or bad settings for it) before any work."""
    if method in METHODS:
        sparse_config(config, method, target).validate()
        if METHODS.get(method).needs_training and config.epochs <= 0:
            raise UserError(f"{method} prunes while fine-tuning: pass --data DIR and --epochs N")
    else:
        method_config(config, method, target).validate()


def _declared(registry, name: str, options: dict) -> dict:
    return {k: v for k, v in options.items() if k in registry.options(name)}


def _point(report: ShrinkReport, criterion: str, target: float, by: str, wall: float) -> SweepPoint:
    acc = report.accuracy

    def top1(stage) -> float | None:
        return stage.top1 if stage else None

    return SweepPoint(
        criterion,
        target,
        by,
        report.ratios["params"],
        report.ratios["macs"],
        top1(acc.before),
        top1(acc.after_pruning),
        top1(acc.after_retraining),
        round(wall, 1),
    )


def _read_point(path: Path) -> SweepPoint:
    try:
        data = json.loads(path.read_text())
        return SweepPoint(**{k: data[k] for k in SweepPoint.__dataclass_fields__})
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path} is not a sweep point ({exc}); delete it to recompute that point") from exc


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
    write_json(out / "sweep.json", summary)
    if scored:
        fronts = {ratio: pareto_front(points, ratio) for ratio in ("params_ratio", "macs_ratio")}
        plot_pareto(points, fronts, out / "pareto.png")


def _winners(points: Sequence[SweepPoint]) -> dict[str, dict]:
    """Best accuracy at each target, and its margin over the runner-up."""
    out = {}
    for target in sorted({p.target for p in points}, reverse=True):
        ranked = sorted((p for p in points if p.target == target and p.accuracy is not None), key=lambda p: -p.accuracy)
        if ranked:
            margin = ranked[0].accuracy - ranked[1].accuracy if len(ranked) > 1 else None
            out[f"{target:g}"] = {"criterion": ranked[0].criterion, "accuracy": ranked[0].accuracy, "margin": margin}
    return out


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"
