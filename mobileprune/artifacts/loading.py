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

import torch
import torch.nn as nn

from ..errors import UserError
from ..models import ZOO, build_model, resolve_spec
from ..models.infer import infer_architecture
from ..models.tracing_fixes import make_traceable
from .checkpoints import check_finite, load_state, read_checkpoint, sha256_of, spec_for_module, unwrap_state_dict
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
    if num_classes is not None and num_classes < 1:
        raise UserError(f"--num-classes must be at least 1, not {num_classes}")
    if input_size is not None and not MIN_INPUT <= input_size <= MAX_INPUT:
        raise UserError(f"--input-size must be between {MIN_INPUT} and {MAX_INPUT} pixels, not {input_size}")
    classes = {"num_classes": num_classes} if num_classes is not None else {}
    loaded = _load(source, arch, pretrained, trust_pickle, {**(arch_kwargs or {}), **classes})
    if input_size is not None and input_size != loaded.spec.input_size:
        run_at(loaded, input_size)
    return loaded


MIN_INPUT, MAX_INPUT = 8, 2048  # pixels; a network's own minimum is checked by running it


def run_at(loaded: LoadedModel, size: int, option: str = "--input-size") -> None:
    """From now on `loaded` is traced, measured, trained and exported at `size` px (its spec says so).

    One forward pass at `size` first: too small an input fails inside the network, say so in one line.
    """
    if not MIN_INPUT <= size <= MAX_INPUT:
        raise UserError(f"{option} must be between {MIN_INPUT} and {MAX_INPUT} pixels, not {size}")
    try:
        with torch.no_grad():
            loaded.model.eval()(torch.zeros(1, 3, size, size))
    except RuntimeError as exc:
        works = next((s for s in (16, 32, 64, 96, 128, 160, 224) if s > size and _runs(loaded.model, s)), None)
        hint = f"; it runs at {works}" if works else ""
        reason = str(exc).strip().splitlines()[0][:120]
        raise UserError(f"{loaded.spec.arch} cannot run at {option} {size} ({reason}){hint}") from None
    loaded.spec = replace(loaded.spec, input_size=size)


def _runs(model: nn.Module, size: int) -> bool:
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
        return True
    except RuntimeError:
        return False


def _load(source: str | Path, arch: str | None, pretrained: bool, trust_pickle: bool, kwargs: dict) -> LoadedModel:
    text = str(source)
    path = Path(text)
    if path.is_dir():
        loaded = load_output(path, trust_pickle)
        check_finite(loaded.model, text)
        return loaded
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
        check_finite(obj, text)
        spec = resolve_spec(arch, **kwargs) if arch else spec_for_module(obj, text)
        return LoadedModel(obj.eval(), spec, text, "checkpoint (pickled module)", sha)
    state = unwrap_state_dict(obj, text)
    notes = []
    if arch is None:
        arch, classes = _infer_arch(state, text)
        kwargs = {"num_classes": classes, **kwargs}
        notes.append(f"architecture inferred from the checkpoint's keys and shapes: {arch} ({classes} classes)")
    spec = resolve_spec(arch, **kwargs)
    model = build_model(spec)
    load_state(model, state, text, spec.arch)
    check_finite(model, text)
    return LoadedModel(model.eval(), spec, text, "checkpoint", sha, notes=notes)


def _infer_arch(state: dict, source: str) -> tuple[str, int]:
    """The one known architecture this state dict fits, or a UserError listing the candidates (or none)."""
    matches = infer_architecture(state)
    if len(matches) == 1:
        return matches[0].arch, matches[0].num_classes
    if matches:
        names = ", ".join(m.arch for m in matches)
        raise UserError(f"'{source}' fits several architectures ({names}): choose one with --arch NAME")
    raise UserError(
        f"'{source}' holds a state dict of no architecture mobileprune knows by its keys and shapes: say which "
        "it is with --arch NAME (a zoo name, timm:<name> or torchvision:<name>)"
    )


def _is_arch_name(text: str) -> bool:
    return text in ZOO or text.startswith(("timm:", "torchvision:"))
