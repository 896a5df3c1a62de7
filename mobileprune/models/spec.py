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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelSpec:
        data = dict(data)
        data["mean"] = tuple(data["mean"])
        data["std"] = tuple(data["std"])
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
        base = replace(base, num_classes=int(kwargs["num_classes"]))
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
    )


def _torchvision_spec(arch: str, name: str) -> ModelSpec:
    import torchvision

    if name not in torchvision.models.list_models():
        raise UserError(f"torchvision has no model named '{name}' (see torchvision.models.list_models())")
    return ModelSpec(arch, "torchvision", name)
