"""Class ids and readable names of a spec's outputs, so data folders, reports and app files can name them.

A spec names its label set (`imagenet-1k` for the library ImageNet models); the ids and names come from
timm's copy of the ImageNet synset list (`timm.data.ImageNetInfo`), so nothing is downloaded. A model with
a new head has no label set: its classes are the sorted class folders it was trained on, or a
`--labels` file.
"""

from __future__ import annotations

from functools import cache

from .spec import IMAGENET_1K, ModelSpec


def class_ids(spec: ModelSpec) -> list[str] | None:
    """Machine ids of the outputs in index order (ImageNet wnids such as n01440764), or None when unknown."""
    return list(_imagenet()[0]) if spec.label_set == IMAGENET_1K and spec.num_classes == 1000 else None


def class_names(spec: ModelSpec) -> list[str] | None:
    """Readable names in index order ('tench', 'goldfish', ...), or None when unknown."""
    if spec.label_set == IMAGENET_1K and spec.num_classes == 1000:
        return [description.split(",")[0].strip() for description in _imagenet()[1]]
    return None


@cache
def _imagenet() -> tuple[tuple[str, ...], tuple[str, ...]]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return tuple(info.label_names()), tuple(info.label_descriptions())
