"""`compare`: the unpruned model against one or more pruned ones on labelled images, class by class.

One pass over the evaluation images feeds every model the same batch, so all predictions line up image by
image (an unreadable image is skipped for all). Writes `compare.json` (per-model top-1/top-5 and agreement
with the first model, per-class damage, PIE count), `pie.csv` (every pruning-identified exemplar, worst
first) and `pie.png` (thumbnails of the worst, with readable class names), `classes.png` (the most damaged classes).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_folder, prepare_output_dir, write_json
from ..errors import UserError
from ..models.labels import class_names
from ..progress import SILENT, Progress
from ..train.data import ImageSet
from .damage import ClassDamage, agreement, modal_prediction, per_class, pruning_identified_exemplars
from .predictors import Predictor

BATCH = 50
WORST_SHOWN = 16  # thumbnails in pie.png


@dataclass
class Comparison:
    models: list[dict]  # label, kind, top1, top5, agreement with the first model
    images: int
    classes: list[ClassDamage]  # most damaged first
    pie: list[dict]  # worst first: file, label, before, after, scores
    class_names: list[str] | None

    def to_json(self) -> dict:
        return {
            "models": self.models,
            "images": self.images,
            "pie_count": len(self.pie),
            "pie_share": round(len(self.pie) / max(self.images, 1), 4),
            "pie_definition": "images where the pruned models' modal top-1 differs from the first model's top-1",
            "classes": [c.to_json() for c in self.classes],
        }


def check_compatible(predictors: list[Predictor]) -> None:
    """One model, several prunings of it: same architecture, input size and classes, or one line why not."""
    first = predictors[0]
    for other in predictors[1:]:
        for what, a, b in (
            ("architecture", first.spec.arch, other.spec.arch),
            ("input size", first.spec.input_size, other.spec.input_size),
            ("number of classes", first.spec.num_classes, other.spec.num_classes),
        ):
            if a != b:
                raise UserError(
                    f"'{other.label}' has {what} {b}, '{first.label}' has {a}: compare prunings of one model"
                )


def compare_models(
    predictors: list[Predictor],
    images: ImageSet,
    labels_given: list[str] | None = None,
    progress: Progress = SILENT,
) -> Comparison:
    """Predictions of every model on `images` (labelled), and what they add up to; `labels_given` names the
    classes (default: the spec's names, e.g. ImageNet's, else the class folders in index order)."""
    if len(predictors) < 2:
        raise UserError("compare needs the unpruned model and at least one pruned model")
    if not images.labeled:
        raise UserError("--eval-data needs class folders (labels) to compare accuracy per class")
    check_compatible(predictors)
    scores, labels, kept = _predict_all(predictors, images, progress)
    top5 = [np.argsort(-s, axis=1)[:, :5] for s in scores]
    top1 = [t[:, 0] for t in top5]
    names = labels_given or class_names(predictors[0].spec) or images.classes or None
    models = [
        {
            "label": p.label,
            "kind": p.kind,
            "top1": round(float((t[:, 0] == labels).mean()), 4),
            "top5": round(float((t == labels[:, None]).any(axis=1).mean()), 4),
            "agreement_with_first": round(agreement(t[:, 0], top1[0]), 4),
        }
        for p, t in zip(predictors, top5, strict=True)
    ]
    classes = per_class(labels, top5[0], top5[1:], names)
    pie = _exemplars(scores, top1, labels, [images.samples[i][0] for i in kept], names)
    return Comparison(models, len(labels), classes, pie, names)


def check_compare_dir(out: str | Path, force: bool = False) -> Path:
    """Fail before any work if `out` cannot be written or would overwrite something unasked (see atomic.py)."""
    return prepare_output_dir(out, force, _is_comparison, "compare output (compare.json, pie.csv, PNGs)")


def write_comparison(result: Comparison, out: str | Path, force: bool = False) -> Path:
    out = check_compare_dir(out, force)
    from ..reporting.plots import plot_class_damage, plot_pie_grid

    with atomic_folder(out, replace=force, is_ours=_is_comparison) as tmp:
        write_json(tmp / "compare.json", result.to_json())
        with open(tmp / "pie.csv", "w", newline="") as f:
            fields = ["file", "label", "before", "after", "before_confidence", "after_probability_of_before", "score"]
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(result.pie)
        plot_pie_grid(result.pie[:WORST_SHOWN], tmp / "pie.png", len(result.pie), result.images)
        plot_class_damage(result.classes, tmp / "classes.png")
    return out


def _predict_all(predictors: list[Predictor], images: ImageSet, progress: Progress):
    """(scores per model, labels, indices of the readable images), all models on the same batches."""
    scores: list[list[np.ndarray]] = [[] for _ in predictors]
    labels, kept = [], []
    with progress.task(f"predicting {len(images)} images with {len(predictors)} models", len(images)) as tick:
        for start in range(0, len(images), BATCH):
            items = [(i, images[i]) for i in range(start, min(start + BATCH, len(images)))]
            readable = [(i, item) for i, item in items if item is not None]
            if readable:
                batch = torch.stack([item[0] for _, item in readable])
                for k, predictor in enumerate(predictors):
                    scores[k].append(np.asarray(predictor.predict(batch), dtype=np.float32))
                labels += [item[1] for _, item in readable]
                kept += [i for i, _ in readable]
            tick.advance(len(items))
    if not kept:
        raise UserError(f"none of the {len(images)} evaluation images could be read")
    return [np.concatenate(s) for s in scores], np.asarray(labels), kept


def _exemplars(scores, top1, labels, files, names) -> list[dict]:
    """The PIE images, worst first: how sure the first model was minus how much the pruned ones still agree."""
    before = _softmax(scores[0])
    after = np.mean([_softmax(s) for s in scores[1:]], axis=0)
    modal = modal_prediction(top1[1:])
    rows = []
    for i in pruning_identified_exemplars(top1[0], top1[1:]):
        confidence, kept = float(before[i, top1[0][i]]), float(after[i, top1[0][i]])
        rows.append(
            {
                "file": str(files[i]),
                "label": _name(names, labels[i]),
                "before": _name(names, top1[0][i]),
                "after": _name(names, modal[i]),
                "before_confidence": round(confidence, 4),
                "after_probability_of_before": round(kept, 4),
                "score": round(confidence - kept, 4),
            }
        )
    return sorted(rows, key=lambda r: -r["score"])


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _name(names: list[str] | None, index) -> str:
    return names[int(index)] if names else str(int(index))


def _is_comparison(folder: Path) -> bool:
    names = {p.name for p in folder.iterdir()}
    return "compare.json" in names and names <= {"compare.json", "pie.csv", "pie.png", "classes.png"}
