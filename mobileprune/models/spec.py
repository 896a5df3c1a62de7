"""Named architectures (the zoo) and the metadata that travels with them.

A `ModelSpec` says how to rebuild a network (library, builder name, keyword arguments) and how to feed it
(input size, mean/std, classifier layer). It is written into every output so that `mobileprune.load` can
rebuild the architecture without pickles, and later steps (convert, bench) know the input contract.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_1K = "imagenet-1k"


@dataclass(frozen=True)
class ModelSpec:
    """How to build a network and what it expects as input."""

    arch: str  # the name the user gave: a zoo name, or "timm:<name>" / "torchvision:<name>"
    library: str  # "timm" or "torchvision"
    builder: str  # the library's model name
    kwargs: dict[str, Any] = field(default_factory=dict)
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    classifier: str | None = None  # dotted module name of the final layer (never pruned on its outputs)
    num_classes: int = 1000
    label_set: str | None = IMAGENET_1K  # whose class ids the outputs are (see labels.py); None: unknown

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelSpec:
        """A spec from plan.json/report.json; wrong types raise ValueError or TypeError, naming the field."""
        data = dict(data)
        for name in ("mean", "std"):
            values = tuple(float(v) for v in data[name])
            if len(values) != 3 or any(v != v for v in values):
                raise ValueError(f"spec.{name} must be three numbers, not {data[name]!r}")
            data[name] = values
        for name in ("input_size", "num_classes"):
            if not isinstance(data[name], int) or isinstance(data[name], bool) or data[name] < 1:
                raise ValueError(f"spec.{name} must be a positive whole number, not {data[name]!r}")
        for name in ("arch", "library", "builder"):
            if not isinstance(data[name], str):
                raise ValueError(f"spec.{name} must be a string, not {data[name]!r}")
        if not isinstance(data.get("kwargs", {}), dict):
            raise ValueError(f"spec.kwargs must be a mapping, not {data['kwargs']!r}")
        if "label_set" not in data:  # written before specs named their classes: library ImageNet models did
            imagenet = data["library"] in ("timm", "torchvision") and data["num_classes"] == 1000
            data["label_set"] = IMAGENET_1K if imagenet else None
        return cls(**data)


# The zoo: short names a mobile engineer types. Classifier names are where each library keeps the last layer.
ZOO: dict[str, ModelSpec] = {
    "mobilenet_v1": ModelSpec("mobilenet_v1", "timm", "mobilenetv1_100", classifier="classifier"),
    "mobilenet_v2": ModelSpec("mobilenet_v2", "torchvision", "mobilenet_v2", classifier="classifier.1"),
    "mobilenet_v3_small": ModelSpec(
        "mobilenet_v3_small", "torchvision", "mobilenet_v3_small", classifier="classifier.3"
    ),
    "mobilenet_v3_large": ModelSpec(
        "mobilenet_v3_large", "torchvision", "mobilenet_v3_large", classifier="classifier.3"
    ),
}


def resolve_spec(arch: str, **kwargs: Any) -> ModelSpec:
    """Turn a user's architecture name into a spec; kwargs go to the library's builder (e.g. width_mult)."""
    if arch in ZOO:
        base = ZOO[arch]
    elif arch.startswith("timm:"):
        base = _timm_spec(arch, arch.split(":", 1)[1])
    elif arch.startswith("torchvision:"):
        base = _torchvision_spec(arch, arch.split(":", 1)[1])
    else:
        known = ", ".join(sorted(ZOO))
        raise UserError(f"unknown architecture '{arch}': use one of {known}, or timm:<name> / torchvision:<name>")
    if "num_classes" in kwargs:
        classes = int(kwargs["num_classes"])
        if classes < 1:
            raise UserError(f"--num-classes must be at least 1, not {classes}")
        label_set = base.label_set if classes == base.num_classes else None  # a new head: its classes are the user's
        base = replace(base, num_classes=classes, label_set=label_set)
    return replace(base, kwargs={**base.kwargs, **kwargs})


def _timm_spec(arch: str, name: str) -> ModelSpec:
    import timm

    if not timm.is_model(name):
        raise UserError(f"timm has no model named '{name}' (see timm.list_models())")
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        return ModelSpec(arch, "timm", name)
    return ModelSpec(
        arch,
        "timm",
        name,
        input_size=int(cfg.input_size[-1]),
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
        classifier=cfg.classifier if isinstance(cfg.classifier, str) else None,
        num_classes=int(cfg.num_classes or 1000),
        label_set=IMAGENET_1K if int(cfg.num_classes or 1000) == 1000 else None,
    )


def _torchvision_spec(arch: str, name: str) -> ModelSpec:
    import torchvision

    if name not in torchvision.models.list_models():
        raise UserError(f"torchvision has no model named '{name}' (see torchvision.models.list_models())")
    return ModelSpec(arch, "torchvision", name)
