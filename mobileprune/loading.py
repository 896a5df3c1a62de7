"""From whatever the user has to an `nn.Module` plus its `ModelSpec`.

Accepted: a zoo name or `timm:`/`torchvision:` name; a state dict (`.pt`/`.pth`, optionally wrapped in
{"state_dict": ...} or {"model": ...}) with `--arch`; a previous `shrink` output folder; and, only with
`trust_pickle=True`, a whole pickled module (loading one runs arbitrary code). Everything else loads with
`weights_only=True`.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .errors import UserError
from .plan import ChannelPlan
from .presets import ModelSpec, build_model, classifier_module, resolve_spec


@dataclass
class LoadedModel:
    model: nn.Module
    spec: ModelSpec
    source: str  # what the user passed, for reports
    weights: str  # "random", "pretrained (library)", or "checkpoint"
    sha256: str | None = None  # of the checkpoint file, when there is one
    plan: ChannelPlan = field(default_factory=ChannelPlan)  # steps already applied (shrunk-again models)


def load_model(
    source: str | Path,
    arch: str | None = None,
    *,
    pretrained: bool = False,
    trust_pickle: bool = False,
    arch_kwargs: dict[str, Any] | None = None,
) -> LoadedModel:
    """Resolve `source` to a model in eval mode; raises `UserError` with a next step on bad input."""
    kwargs = dict(arch_kwargs or {})
    text = str(source)
    path = Path(text)
    if path.is_dir():
        from .output import load_output

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
    obj = _read_checkpoint(path, trust_pickle)
    if isinstance(obj, nn.Module):
        from .tracing_fixes import make_traceable

        make_traceable(obj)
        spec = resolve_spec(arch, **kwargs) if arch else _spec_for_module(obj, text)
        return LoadedModel(obj.eval(), spec, text, "checkpoint (pickled module)", sha)
    state = _unwrap_state_dict(obj, text)
    if arch is None:
        raise UserError(f"'{text}' holds a state dict: say which architecture it is with --arch NAME")
    spec = resolve_spec(arch, **kwargs)
    model = build_model(spec)
    _load_state(model, state, text, spec.arch)
    return LoadedModel(model.eval(), spec, text, "checkpoint", sha)


def _is_arch_name(text: str) -> bool:
    from .presets import ZOO

    return text in ZOO or text.startswith(("timm:", "torchvision:"))


def _read_checkpoint(path: Path, trust_pickle: bool) -> Any:
    with path.open("rb") as f:
        zip_magic = f.read(2) == b"PK"
    if zip_magic and not zipfile.is_zipfile(path):
        raise UserError(f"'{path}' is truncated or corrupt: not a complete PyTorch checkpoint")
    if _is_torchscript(path):
        raise UserError(
            f"'{path}' is a TorchScript archive, which cannot be pruned (its graph is frozen): "
            "export a state dict instead (torch.save(model.state_dict(), 'weights.pth')) and pass --arch"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as exc:  # torch raises many types for bad files
        text = str(exc)
        if "weights_only" in text or "WeightsUnpickler" in text or "GLOBAL" in text:
            raise UserError(
                f"'{path}' contains a pickled Python object (probably a whole nn.Module); loading it runs "
                "arbitrary code, so it is refused: pass --trust-pickle if you trust the file, or save a "
                "state dict instead"
            ) from exc
        if "central directory" in text or "failed finding" in text or "zip archive" in text:
            raise UserError(f"'{path}' is truncated or corrupt: not a complete PyTorch checkpoint") from exc
        raise UserError(f"'{path}' is not a PyTorch checkpoint ({type(exc).__name__}: {text[:120]})") from exc


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())
    except zipfile.BadZipFile:
        return False


def _unwrap_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            inner = obj.get(key)
            if isinstance(inner, dict):
                obj = inner
                break
            if isinstance(inner, nn.Module):
                return inner.state_dict()
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"'{source}' is not a state dict (a mapping of names to tensors)")
    # checkpoints saved from DataParallel / DDP prefix every key with "module."
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str, arch: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"first missing key '{missing[0]}' ({len(missing)} missing)")
        if unexpected:
            parts.append(f"first unexpected key '{unexpected[0]}' ({len(unexpected)} unexpected)")
        raise UserError(f"'{source}' does not match --arch {arch}: " + ", ".join(parts))
    for k, v in state.items():
        if expected[k].shape != v.shape:
            raise UserError(
                f"'{source}' does not match --arch {arch}: '{k}' has shape {tuple(v.shape)}, "
                f"the architecture expects {tuple(expected[k].shape)} (wrong width or class count?)"
            )
    model.load_state_dict(state, strict=True)


def _spec_for_module(model: nn.Module, source: str) -> ModelSpec:
    """A spec for a pickled module of unknown origin: ImageNet defaults, last layer as classifier."""
    classifier = classifier_module(model, ModelSpec("pickled", "pickle", source))
    names = {m: n for n, m in model.named_modules()}
    out = getattr(classifier, "out_features", getattr(classifier, "out_channels", 1000))
    return ModelSpec("pickled", "pickle", source, classifier=names.get(classifier), num_classes=int(out))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
