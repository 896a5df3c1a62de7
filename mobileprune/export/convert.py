"""`convert`: one call, every requested format, each checked against PyTorch, one bundle folder.

A format whose converter is missing or fails is reported (with the extra to install, or the error) and
the other formats are still produced; the bundle's metadata.json says what happened to each.
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_folder, write_json
from ..cost import count_cost
from ..errors import UserError
from ..loading import LoadedModel
from ..output import check_output_dir
from ..progress import SILENT, Progress
from ..shrink import versions
from .base import FORMATS, ExportRequest

TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}  # max |logit diff| against PyTorch


@dataclass
class FormatResult:
    format: str
    file: str | None
    precision: str
    size_mb: float | None
    seconds: float
    check: str
    max_abs_diff: float | None
    ok: bool
    details: dict | None = None


def parse_formats(text: str) -> list[str]:
    return _parse_choices(text, "format", FORMATS.names())


def parse_precisions(text: str) -> list[str]:
    return _parse_choices(text, "precision", list(TOLERANCE))


def _parse_choices(text: str, what: str, allowed: list[str]) -> list[str]:
    """A comma-separated CLI list, every item checked: 'tflite, onnx' → ['tflite', 'onnx']."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise UserError(f"unknown {what} '{(bad or [text])[0]}': choose from {', '.join(allowed)}")
    return names


def check_inputs(size: int, count: int = 4, seed: int = 0) -> np.ndarray:
    """Seeded normal inputs in the model's normalised input space (NCHW)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(count, 3, size, size, generator=g).numpy()


def convert(
    loaded: LoadedModel,
    formats: list[str],
    out: str | Path,
    *,
    check: bool = True,
    inputs: np.ndarray | None = None,
    labels: list[str] | None = None,
    precisions: list[str] | None = None,
    force: bool = False,
    progress: Progress = SILENT,
) -> list[FormatResult]:
    """Write one file per format into `out` and check each numerically; returns per-format results."""
    out = check_output_dir(out, force)
    model, spec = loaded.model.eval(), loaded.spec
    size = spec.input_size
    example = torch.randn(1, 3, size, size)
    inputs = check_inputs(size) if inputs is None else inputs
    with torch.no_grad():
        reference = model(torch.from_numpy(inputs)).numpy()
    results: list[FormatResult] = []
    with atomic_folder(out) as tmp:
        for name in formats:
            exporter = FORMATS.create(name)
            # requested precisions this format can write; its own default when it can write none of them
            wanted = [p for p in (precisions or []) if p in exporter.precisions] or [exporter.precisions[0]]
            for precision in wanted:
                progress.log(f"converting to {name} ({precision}) ...")
                request = ExportRequest(model, spec, example, tmp, labels, precision)
                results.append(_convert_one(name, request, inputs, reference, check))
        if labels:
            (tmp / "labels.txt").write_text("\n".join(labels) + "\n")
        cost = count_cost(model, example)
        write_json(
            tmp / "metadata.json",
            {
                "model": {
                    "arch": spec.arch,
                    "source": loaded.source,
                    "sha256": loaded.sha256,
                    "weights": loaded.weights,
                },
                "input": {
                    "size": [size, size],
                    "layout": "NCHW",
                    "dtype": "float32",
                    "mean": spec.mean,
                    "std": spec.std,
                    "range": "0-1 RGB, then (x - mean) / std",
                },
                "classes": spec.num_classes,
                "labels": "labels.txt" if labels else None,
                "params": cost.params,
                "macs": cost.macs,
                "formats": [asdict(r) for r in results],
                "check": {
                    "inputs": f"{len(inputs)} seeded random inputs" if check else "skipped (--no-check)",
                    "tolerance": TOLERANCE,
                },
                "versions": {**versions(), **{k: v for n in formats for k, v in FORMATS.create(n).versions().items()}},
            },
        )
    return results


def _convert_one(name: str, request: ExportRequest, inputs: np.ndarray, reference: np.ndarray, check: bool):
    exporter = FORMATS.create(name)
    precision = request.precision
    missing = exporter.missing()
    if missing:
        return FormatResult(
            name,
            None,
            precision,
            None,
            0.0,
            f"not installed ({missing}): pip install mobileprune[{exporter.extra}]",
            None,
            False,
        )
    started = time.time()
    try:
        # converters print their own progress; the summary table is what the user reads
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            path = exporter.export(request)
    except Exception as exc:  # converters raise anything; report the op/format and carry on
        message = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        return FormatResult(
            name,
            None,
            precision,
            None,
            round(time.time() - started, 2),
            f"FAILED to convert to {name}: {type(exc).__name__}: {message}",
            None,
            False,
        )
    seconds = round(time.time() - started, 2)
    size_mb = round(_size(path) / 1e6, 3)
    if not check:
        return FormatResult(name, path.name, precision, size_mb, seconds, "skipped", None, True)
    outputs = exporter.run(path, inputs)
    if isinstance(outputs, str):  # cannot run here; the format may still describe itself
        details = exporter.describe(path)
        verdict = outputs + (f" (spec read back: {details['ops']} ops)" if details else "")
        return FormatResult(name, path.name, precision, size_mb, seconds, verdict, None, True, details)
    diff = float(np.abs(outputs - reference).max())
    tolerance = TOLERANCE[precision]
    ok = diff <= tolerance
    verdict = f"passed (max |diff| {diff:.1e})" if ok else f"FAILED (max |diff| {diff:.1e} > {tolerance})"
    return FormatResult(name, path.name, precision, size_mb, seconds, verdict, diff, ok)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size
