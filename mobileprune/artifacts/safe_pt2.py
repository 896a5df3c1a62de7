"""Open a `torch.export` file (`.pt2`) without running code that came with it.

`torch.export.load` unpickles with `weights_only=False` wherever the archive asks for it: sample inputs
that fail the safe unpickler are retried unsafely, payloads marked `use_pickle` and "custom"/"opaque"
constants are full pickles, legacy `.pt` payloads go through the same fallback, and AOTInductor folders
load compiled shared libraries. A `.pt2` is therefore only as safe as whoever wrote it.

`check_pt2` reads the archive as a plain zip and accepts only what `torch.export.save` writes for an
ordinary program: JSON, raw tensor bytes, and pickles that PyTorch's restricted unpickler
(`weights_only=True`) loads. Anything else needs `trust_pickle=True`, as a pickled checkpoint does.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import torch

from ..errors import UserError

# archive entries (below the archive's one top folder) that torch.export.save writes and that hold no code
_PLAIN = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/[^/]+\.json|data/weights/[^/]+_weights_config\.json|data/constants/[^/]+_constants_config\.json"
    r"|data/weights/weight_\d+|data/constants/tensor_\d+|extra/.+)"
)
_PICKLED = re.compile(r"data/sample_inputs/[^/]+\.pt")  # always a pickle: must pass the restricted unpickler
_CONFIGS = re.compile(r"data/(weights|constants)/[^/]+_(weights|constants)_config\.json")


def check_pt2(path: str | Path, data: bytes | None = None) -> None:
    """Raise `UserError` unless `path` (or its bytes, `data`) loads without unrestricted unpickling."""
    path = Path(path)
    try:
        with zipfile.ZipFile(io.BytesIO(data) if data is not None else path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            prefix = _archive_prefix(names)
            if prefix is None or f"{prefix}archive_version" not in names:
                raise UserError(f"'{path}' is not a torch.export archive of this PyTorch generation (no version)")
            for name in names:
                inner = name[len(prefix) :]
                if _PICKLED.fullmatch(inner):
                    _restricted_unpickle(zf.read(name), path, inner)
                elif not _PLAIN.fullmatch(inner):
                    why = f"it holds '{inner}', which torch.export.load would run or unpickle"
                    raise UserError(_refusal(path, why))
                if _CONFIGS.fullmatch(inner):
                    _check_payload_config(zf, prefix, inner, path)
    except zipfile.BadZipFile as exc:
        raise UserError(f"'{path}' is not a torch.export file: not a complete zip archive ({exc})") from exc


def load_exported(path: str | Path, trust_pickle: bool = False) -> torch.export.ExportedProgram:
    """`torch.export.load(path)`, after `check_pt2` unless the user said they trust the file.

    The file is read once and the same bytes are checked and loaded, so it cannot be swapped in between.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read '{path}' ({exc.strerror or exc})") from exc
    if not trust_pickle:
        check_pt2(path, data)
    try:
        return torch.export.load(io.BytesIO(data))
    except (RuntimeError, ValueError, KeyError, AssertionError, zipfile.BadZipFile) as exc:
        message = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"'{path}' is a damaged torch.export file ({type(exc).__name__}: {message})") from exc


def _archive_prefix(names: list[str]) -> str | None:
    """The archive's one top folder ('model/'), which torch.export.save names after the file."""
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    return f"{tops.pop()}/" if len(tops) == 1 else None


def _restricted_unpickle(data: bytes, path: Path, inner: str) -> None:
    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except Exception as exc:  # the restricted unpickler raises UnpicklingError, but also others
        raise UserError(
            _refusal(path, f"'{inner}' is a pickle that needs unrestricted unpickling ({type(exc).__name__})")
        ) from exc


def _check_payload_config(zf: zipfile.ZipFile, prefix: str, inner: str, path: Path) -> None:
    """Weights and constants must be raw tensors: no `use_pickle`, no pickled script or opaque objects."""
    try:
        config = json.loads(zf.read(prefix + inner)).get("config", {})
        entries = list(config.items())
    except (ValueError, AttributeError) as exc:
        raise UserError(f"'{path}' is a damaged torch.export file ('{inner}' is not valid JSON)") from exc
    for fqn, meta in entries:
        if (
            not isinstance(meta, dict)
            or meta.get("use_pickle")
            or not re.fullmatch(r"(weight|tensor)_\d+", str(meta.get("path_name", "")))
        ):
            raise UserError(_refusal(path, f"'{fqn}' in '{inner}' is stored as a pickled object"))


def _refusal(path: Path, why: str) -> str:
    return (
        f"'{path}' cannot be opened safely: {why}. Loading it could run code from the file; "
        "pass --trust-pickle only if you made the file yourself"
    )
