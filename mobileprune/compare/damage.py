"""Who pays for a smaller model: per-class top-1 before and after, agreement, and the pruning-identified exemplars.

Hooker et al. ("What Do Compressed Deep Neural Networks Forget?", 2019) found that pruning costs some classes
and images far more than the mean says. Their *pruning-identified exemplars* (PIE) are the images on which
the modal (most frequent) top-1 of a population of pruned models differs from the unpruned model's top-1;
with one pruned model the mode is its own prediction. Ties in the mode go to the smallest class index, so the
set is deterministic.

Everything here works on predictions already made (class indices and top-5 sets), so it can be tested with
toy numbers and applies to any runtime that produced them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..train.class_counts import ClassCounts

MIN_IMAGES = 5  # below this many images a class's top-1 moves 20 points per image: shown, flagged as noise


@dataclass
class ClassDamage:
    index: int
    name: str
    images: int
    top1_before: float
    top1_after: float  # the pruned models' mean
    top5_before: float
    top5_after: float
    too_few: bool  # fewer than MIN_IMAGES images: its change cannot be told from noise

    @property
    def change(self) -> float:
        return self.top1_after - self.top1_before

    def to_json(self) -> dict:
        return {
            "class": self.index,
            "name": self.name,
            "images": self.images,
            "top1_before": round(self.top1_before, 4),
            "top1_after": round(self.top1_after, 4),
            "top1_change": round(self.change, 4),
            "top5_before": round(self.top5_before, 4),
            "top5_after": round(self.top5_after, 4),
            "too_few_images": self.too_few,
        }


def per_class(
    labels: np.ndarray, before_top5: np.ndarray, after_top5: list[np.ndarray], names: list[str] | None = None
) -> list[ClassDamage]:
    """Top-1/top-5 per class present in `labels`, before and after (mean over pruned models), most damaged first.

    `*_top5` are (images, k) class indices, best first (k may be 1). Ties in damage keep class order.
    """
    classes = int(max(labels.max(), before_top5.max(), *(a.max() for a in after_top5))) + 1
    counts = []
    for top5 in (before_top5, *after_top5):
        counts.append(ClassCounts.zeros(classes))
        counts[-1].add(labels, top5)
    return damage(counts[0], counts[1:], names)


def damage(before: ClassCounts, after: list[ClassCounts], names: list[str] | None = None) -> list[ClassDamage]:
    """Rows for every class with images, from counts made on the same images; most damaged first."""
    rows = []
    for index in np.flatnonzero(before.images):
        n = int(before.images[index])
        rows.append(
            ClassDamage(
                index=int(index),
                name=names[index] if names else str(int(index)),
                images=n,
                top1_before=before.top1[index] / n,
                top1_after=float(np.mean([a.top1[index] / n for a in after])),
                top5_before=before.top5[index] / n,
                top5_after=float(np.mean([a.top5[index] / n for a in after])),
                too_few=n < MIN_IMAGES,
            )
        )
    return sorted(rows, key=lambda r: (r.change, r.index))


def modal_prediction(predictions: list[np.ndarray]) -> np.ndarray:
    """Per image, the class most of the models predict (ties: the smallest index)."""
    stacked = np.stack(predictions)  # (models, images)
    out = np.empty(stacked.shape[1], dtype=np.int64)
    for i in range(stacked.shape[1]):
        values, counts = np.unique(stacked[:, i], return_counts=True)
        out[i] = values[np.argmax(counts)]  # np.unique sorts, argmax takes the first maximum
    return out


def pruning_identified_exemplars(before: np.ndarray, after: list[np.ndarray]) -> np.ndarray:
    """Indices of the images whose modal pruned top-1 differs from the unpruned model's top-1."""
    return np.flatnonzero(modal_prediction(after) != before)


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of images on which two models' top-1 is the same class."""
    return float((a == b).mean()) if len(a) else float("nan")
