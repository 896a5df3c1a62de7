"""Instantiate a `ModelSpec`'s network (optionally with the library's pretrained weights) and find its classifier."""

from __future__ import annotations

import contextlib
import io
import logging
import socket

import torch.nn as nn

from ..errors import UserError
from .spec import ModelSpec
from .tracing_fixes import make_traceable


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
