"""Reading a user's checkpoint file: state dicts (safely), pickled modules (only when trusted), clear errors."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import UserError
from ..models import ModelSpec, classifier_module


def read_checkpoint(path: Path, trust_pickle: bool) -> Any:
    """What the file holds: a state dict (or wrapper), or with `trust_pickle` possibly a whole module."""
    with path.open("rb") as f:
        head = f.read(256)
    zip_magic = head[:2] == b"PK"
    if zip_magic and not zipfile.is_zipfile(path):
        raise UserError(f"'{path}' is truncated or corrupt: not a complete PyTorch checkpoint")
    other = _other_format(path, head, zip_magic)
    if other:
        raise UserError(f"'{path}' is {other}")
    if path.suffix == ".safetensors" or _looks_like_safetensors(head):
        return _read_safetensors(path)
    if not zip_magic and head[:1] != b"\x80":  # neither torch.save's zip nor a pickle
        raise UserError(f"'{path}' is not a PyTorch checkpoint (unrecognised contents)")
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


def _other_format(path: Path, head: bytes, zip_magic: bool) -> str | None:
    """What a file that is not a checkpoint is, with what to pass instead; None for a checkpoint."""
    instead = "mobileprune prunes PyTorch models: pass the state dict the file was made from (with --arch)"
    if head[4:8] == b"TFL3":
        return f"a TFLite model; {instead}"
    if head[4:8] == b"ET12" or path.suffix == ".pte":
        return f"an ExecuTorch program; {instead}"
    if path.suffix == ".onnx" or (head[:1] == b"\x08" and (b"pytorch" in head or b"onnx" in head)):
        return f"an ONNX model; {instead}"
    if zip_magic:
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile:
            return None
        if any(n.endswith("/archive_version") for n in names) and any("/models/" in n for n in names):
            return (
                "a torch.export program (.pt2), which cannot be pruned (its graph is fixed): pass the state dict "
                "(with --arch) or the shrink output folder it came from"
            )
    return None


def _looks_like_safetensors(head: bytes) -> bool:
    return len(head) > 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"'{path}' is a damaged safetensors file ({str(exc)[:160]})") from exc


def check_finite(model: nn.Module, source: str) -> None:
    """Refuse weights with NaN or Inf, naming the first bad tensor: pruning them gives a NaN model silently."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise UserError(
                f"'{source}' has non-finite weights: '{name}' holds {bad} NaN/Inf value(s) of {tensor.numel()}; "
                "the checkpoint is damaged or training diverged"
            )


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())
    except zipfile.BadZipFile:
        return False


def unwrap_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
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


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str, arch: str) -> None:
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


def spec_for_module(model: nn.Module, source: str) -> ModelSpec:
    """A spec for a pickled module of unknown origin: ImageNet defaults, last layer as classifier."""
    classifier = classifier_module(model, ModelSpec("pickled", "pickle", source))
    names = {m: n for n, m in model.named_modules()}
    out = getattr(classifier, "out_features", getattr(classifier, "out_channels", 1000))
    return ModelSpec(
        "pickled", "pickle", source, classifier=names.get(classifier), num_classes=int(out), label_set=None
    )


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
