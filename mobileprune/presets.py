"""Named architectures and the metadata that travels with them.

A `ModelSpec` says how to rebuild a network (library, builder name, keyword arguments) and how to feed it
(input size, mean/std, classifier layer). It is written into every output so that `mobileprune.load` can
rebuild the architecture without pickles, and later steps (convert, bench) know the input contract.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch.nn as nn

from .errors import UserError

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


def build_model(spec: ModelSpec, pretrained: bool = False) -> nn.Module:
    """Instantiate the architecture; `pretrained` asks the library for its weights (needs internet)."""
    try:
        with _quiet_downloads(spec.library) if pretrained else contextlib.nullcontext():
            if spec.library == "timm":
                import timm

                model = timm.create_model(spec.builder, pretrained=pretrained, **spec.kwargs)
            else:
                import torchvision

                weights = "DEFAULT" if pretrained else None
                model = torchvision.models.get_model(spec.builder, weights=weights, **spec.kwargs)
    except UserError:
        raise
    except TypeError as exc:
        raise UserError(f"could not build {spec.arch} with options {spec.kwargs}: {exc}") from exc
    except Exception as exc:
        if pretrained:
            reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            raise UserError(
                f"could not download pretrained weights for {spec.arch} (no internet? {reason}): "
                f"pass a local checkpoint instead, e.g. `mobileprune shrink weights.pth --arch {spec.arch}`"
            ) from exc
        raise UserError(f"could not build {spec.arch}: {exc}") from exc
    from .tracing_fixes import make_traceable

    make_traceable(model)
    return model


WEIGHT_HOSTS = {"timm": "huggingface.co", "torchvision": "download.pytorch.org"}


@contextlib.contextmanager
def _quiet_downloads(library: str):
    """Fail fast offline: libraries retry unreachable hosts for up to a minute, logging each try.

    If the weight host does not resolve, the hub goes offline (cached weights still load) and the
    libraries' own progress and retry lines stay off the terminal; mobileprune prints one line instead.
    """
    host = WEIGHT_HOSTS.get(library)
    offline = False
    try:
        socket.getaddrinfo(host, 443)
    except (OSError, TypeError):
        offline = True
    loggers = [logging.getLogger(n) for n in ("huggingface_hub", "timm")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    hf_constants = None
    if offline and library == "timm":
        import huggingface_hub.constants as hf_constants

        was_offline = hf_constants.HF_HUB_OFFLINE
        hf_constants.HF_HUB_OFFLINE = True
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        if hf_constants is not None:
            hf_constants.HF_HUB_OFFLINE = was_offline


def classifier_module(model: nn.Module, spec: ModelSpec) -> nn.Module | None:
    """The final layer, whose outputs (the classes) are never pruned."""
    if spec.classifier:
        try:
            return model.get_submodule(spec.classifier)
        except AttributeError:
            pass
    last = None
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            last = module
    return last


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
