"""What `bench` arguments name: a model file, or a `convert` bundle / `shrink` output folder of them.

Each argument becomes one `BenchModel` with the files to time and, where the folder says, its parameter
and MAC counts (so a speed-up can be set beside the MAC ratio that promised it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import read_report
from ..errors import UserError
from .runtimes import runtime_for


@dataclass
class BenchModel:
    label: str
    files: list[Path]
    params: int | None = None
    macs: int | None = None


def open_bench_model(argument: str | Path, label: str | None = None) -> BenchModel:
    path = Path(argument)
    if not path.exists():
        raise UserError(f"'{argument}' does not exist (give a model file or a convert/shrink output folder)")
    if path.is_file() or path.name.endswith(".mlpackage"):
        if runtime_for(path) is None:
            raise UserError(f"'{path}' is not a model file bench can run (.tflite, .onnx, .pte, .pt2, .mlpackage)")
        model = BenchModel(label or str(argument), [path])
        _read_cost(model, path.parent)
        return model
    files = []
    for folder in (path, path / "bundle"):  # a shrink output may hold its `--export` bundle
        if not folder.is_dir():
            continue
        for f in sorted(folder.iterdir()):
            if runtime_for(f) is not None:
                files.append(f)
    if not files:
        raise UserError(f"no model files in '{path}' (expected model.tflite, model.onnx, model.pte or model.pt2)")
    model = BenchModel(label or str(argument).rstrip("/"), files)
    _read_cost(model, path)
    return model


def _read_cost(model: BenchModel, folder: Path) -> None:
    """Parameters and MACs from a bundle's metadata.json or a shrink folder's report.json."""
    for name in ("metadata.json", "report.json", "bundle/metadata.json"):
        f = folder / name
        if not f.is_file():
            continue
        try:
            if name == "report.json":
                after = read_report(folder).after
                model.params, model.macs = after.params, after.macs
            else:
                data = json.loads(f.read_text())
                model.params, model.macs = int(data["params"]), int(data["macs"])
            return
        except (UserError, KeyError, TypeError, ValueError):  # a damaged file only costs the ratio columns
            continue
