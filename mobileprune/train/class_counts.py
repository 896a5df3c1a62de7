"""Per-class counts of an evaluation: images, top-1 and top-5 hits per class index.

Counted while evaluating, so `shrink` can say which classes paid for the smaller model without a second
pass over the images (compare/damage.py turns two counts into per-class damage).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ClassCounts:
    """Per class index: images, top-1 hits, top-5 hits (arrays as long as the model has classes)."""

    images: np.ndarray
    top1: np.ndarray
    top5: np.ndarray

    @classmethod
    def zeros(cls, classes: int) -> ClassCounts:
        return cls(*(np.zeros(classes, dtype=np.int64) for _ in range(3)))

    def add(self, labels: np.ndarray, top5: np.ndarray) -> None:
        """Count a batch: `top5` is (images, k) class indices, best first (k may be 1)."""
        np.add.at(self.images, labels, 1)
        np.add.at(self.top1, labels, (top5[:, 0] == labels).astype(np.int64))
        np.add.at(self.top5, labels, (top5 == labels[:, None]).any(axis=1).astype(np.int64))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.images, self.top1, self.top5
