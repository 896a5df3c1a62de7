"""From whatever the user has to an `nn.Module` plus its `ModelSpec`: the one entry point for both load paths.

Accepted: a zoo name or `timm:`/`torchvision:` name; a state dict (`.pt`/`.pth`, optionally wrapped in
{"state_dict": ...} or {"model": ...}) with `--arch`; a previous `shrink` output folder (pickle-free:
safetensors + plan.json); and, only with `trust_pickle=True`, a whole pickled module (loading one runs
arbitrary code). Everything else loads with `weights_only=True`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch.nn as nn

from ..errors import UserError
from ..models import ZOO, build_model, resolve_spec
from ..models.tracing_fixes import make_traceable
from .checkpoints import load_state, read_checkpoint, sha256_of, spec_for_module, unwrap_state_dict
from .loaded_model import LoadedModel
from .shrink_folder import load_output


def load_model(
    source: str | Path,
    arch: str | None = None,
    *,
    pretrained: bool = False,
    trust_pickle: bool = False,
    arch_kwargs: dict[str, Any] | None = None,
    num_classes: int | None = None,
    input_size: int | None = None,
) -> LoadedModel:
    """Resolve `source` to a model in eval mode; raises `UserError` with a next step on bad input.

    `num_classes` sizes a rebuilt architecture's classifier; `input_size` overrides the spec's input
    size (what the model is traced, measured and exported at).
    """
    loaded = _load(source, arch, pretrained, trust_pickle, {**(arch_kwargs or {}), **_classes(num_classes)})
    if input_size is not None:
        loaded.spec = replace(loaded.spec, input_size=input_size)
    return loaded


def _classes(num_classes: int | None) -> dict[str, int]:
    return {"num_classes": num_classes} if num_classes else {}


def _load(source: str | Path, arch: str | None, pretrained: bool, trust_pickle: bool, kwargs: dict) -> LoadedModel:
    text = str(source)
    path = Path(text)
    if path.is_dir():
        return load_output(path, trust_pickle)
    if not path.exists() and _is_arch_name(text):
        spec = resolve_spec(text, **kwargs)
        model = build_model(spec, pretrained=pretrained)
        weights = f"pretrained ({spec.library})" if pretrained else "random"
        return LoadedModel(model.eval(), spec, text, weights)
    if not path.exists():
        raise UserError(f"no such file or model name: '{text}' (give a checkpoint path or a zoo name)")
    if path.stat().st_size == 0:
        raise UserError(f"'{text}' is empty: not a PyTorch checkpoint")
    sha = sha256_of(path)
    obj = read_checkpoint(path, trust_pickle)
    if isinstance(obj, nn.Module):
        make_traceable(obj)
        spec = resolve_spec(arch, **kwargs) if arch else spec_for_module(obj, text)
        return LoadedModel(obj.eval(), spec, text, "checkpoint (pickled module)", sha)
    state = unwrap_state_dict(obj, text)
    if arch is None:
        raise UserError(f"'{text}' holds a state dict: say which architecture it is with --arch NAME")
    spec = resolve_spec(arch, **kwargs)
    model = build_model(spec)
    load_state(model, state, text, spec.arch)
    return LoadedModel(model.eval(), spec, text, "checkpoint", sha)


def _is_arch_name(text: str) -> bool:
    return text in ZOO or text.startswith(("timm:", "torchvision:"))
