"""`convert`: one call, every requested format, each checked against PyTorch, one bundle folder.

A format whose converter is missing or fails is reported (with the extra to install, or the error) and
the other formats are still produced; the bundle's metadata.json says what happened to each.
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..artifacts import LoadedModel
from ..atomic import atomic_folder, prepare_output_dir, write_json
from ..errors import UserError
from ..models import ModelSpec
from ..progress import SILENT, Progress
from ..prune.cost import count_cost
from ..reporting.provenance import versions
from ..train.data import calibration_batches, open_data
from .base import FORMATS, ExportRequest

TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}  # max |logit diff| against PyTorch, per unit of max(1, max |logit|)
INT8_AGREEMENT = 0.95  # int8: share of real images whose top-1 class equals PyTorch's
PRECISIONS = (*TOLERANCE, "int8")
LAYOUTS = ("nchw", "nhwc")


@dataclass
class CheckInputs:
    """The fixed batch every file is compared on, and what it is (the int8 check needs real images)."""

    images: np.ndarray  # NCHW float32, normalised as the model expects
    real: bool
    description: str


class ChannelsLastInput(nn.Module):
    """Takes NHWC input, as Android camera pipelines deliver it, and hands NCHW to the model."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.permute(0, 3, 1, 2))


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
    layout: str = "NCHW"  # of the file's input: NCHW, NHWC, or image (Core ML)
    notes: list[str] = field(default_factory=list)  # what the exporter chose, e.g. the int8 scheme


def parse_formats(text: str) -> list[str]:
    return _parse_choices(text, "format", FORMATS.names())


def parse_precisions(text: str) -> list[str]:
    return _parse_choices(text, "precision", list(PRECISIONS))


def parse_layout(text: str) -> str:
    names = _parse_choices(text, "layout", list(LAYOUTS))
    if len(names) != 1:
        raise UserError(f"--layout takes one of {', '.join(LAYOUTS)}, not '{text}'")
    return names[0]


def _parse_choices(text: str, what: str, allowed: list[str]) -> list[str]:
    """A comma-separated CLI list, every item checked: 'tflite, onnx' → ['tflite', 'onnx']."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise UserError(f"unknown {what} '{(bad or [text])[0]}': choose from {', '.join(allowed)}")
    return names


def is_bundle(folder: Path) -> bool:
    """A folder `convert` wrote: metadata.json, labels.txt and model files, nothing else."""
    names = [p.name for p in folder.iterdir()]
    ours = all(n in ("metadata.json", "labels.txt") or n.startswith("model.") for n in names)
    return ours and "metadata.json" in names


def check_bundle_dir(out: str | Path, force: bool = False) -> Path:
    """Fail before any work if `out` cannot be written or would overwrite something unasked (see atomic.py)."""
    return prepare_output_dir(out, force, is_bundle, "convert bundle (metadata.json and model files)")


def check_export_options(formats: list[str], options: dict[str, str]) -> None:
    """Every requested format checks its own options (e.g. Core ML's deployment target) before any work."""
    for name in formats:
        FORMATS.create(name).check_options(options)


def random_inputs(size: int, count: int = 4, seed: int = 0) -> CheckInputs:
    """Seeded normal inputs in the model's normalised input space: enough for fp32/fp16 checks."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(count, 3, size, size, generator=g).numpy()
    return CheckInputs(images, False, f"{count} seeded random inputs")


def real_images(data: str | Path, spec: ModelSpec, check: int = 64, calibration: int = 100, seed: int = 0):
    """(check inputs, calibration images) from an image folder, from disjoint splits where it has two.

    Calibration comes from the training split, the check from `val`/`test` (or the held-out 10%), so the
    int8 file is never checked on the images that set its ranges.
    """
    splits = open_data(data, spec.input_size, spec.mean, spec.std, seed)
    calibration_set = splits.calibration_set()
    check_set = splits.val if splits.val is not None and len(splits.val) else calibration_set
    checks = torch.cat(calibration_batches(check_set, check, seed=seed)).numpy()
    calibration_images = torch.cat(calibration_batches(calibration_set, calibration, seed=seed + 1)).numpy()
    where = splits.val_source if check_set is splits.val else "train"
    inputs = CheckInputs(checks, True, f"{len(checks)} real images from {data} ({where})")
    return inputs, calibration_images


def convert(
    loaded: LoadedModel,
    formats: list[str],
    out: str | Path,
    *,
    check: bool = True,
    data: str | Path | None = None,
    labels: list[str] | None = None,
    precisions: list[str] | None = None,
    layout: str = "nchw",
    check_images: int = 64,
    calibration_images: int = 100,
    coreml_target: str | None = None,
    force: bool = False,
    progress: Progress = SILENT,
) -> list[FormatResult]:
    """Write one file per format into `out` and check each numerically; returns per-format results.

    `data` (an image folder) gives real check images and the int8 calibration set; without it the
    checks use seeded random inputs and int8 falls back to dynamic-range.
    """
    options = {"coreml_target": coreml_target} if coreml_target else {}
    check_export_options(formats, options)
    out = check_bundle_dir(out, force)
    model, spec = loaded.model.eval(), loaded.spec
    size = spec.input_size
    example = torch.randn(1, 3, size, size)
    calibration = None
    if data is not None:
        progress.log(f"reading check and calibration images from {data} ...")
        inputs, calibration = real_images(data, spec, check_images, calibration_images)
    else:
        inputs = random_inputs(size)
    with torch.no_grad():
        reference = model(torch.from_numpy(inputs.images)).numpy()
    app_input = {
        "size": [size, size],
        "layout": layout.upper(),
        "dtype": "float32",
        "mean": list(spec.mean),
        "std": list(spec.std),
        "range": "0-1 RGB, then (x - mean) / std",
    }
    embedded = {"arch": spec.arch, "input": app_input, "classes": spec.num_classes, "labels": labels}
    results: list[FormatResult] = []
    with atomic_folder(out, replace=force, is_ours=is_bundle) as tmp:
        for name in formats:
            exporter = FORMATS.create(name)
            # requested precisions this format can write; its own default when it can write none of them
            wanted = [p for p in (precisions or []) if p in exporter.precisions] or [exporter.precisions[0]]
            channels_last = layout == "nhwc" and exporter.takes_tensor_input
            for precision in wanted:
                progress.log(f"converting to {name} ({precision}{', NHWC' if channels_last else ''}) ...")
                request = ExportRequest(
                    ChannelsLastInput(model) if channels_last else model,
                    spec,
                    example.permute(0, 2, 3, 1).contiguous() if channels_last else example,
                    tmp,
                    labels,
                    precision,
                    _channels_last(calibration) if channels_last and calibration is not None else calibration,
                    {**embedded, "input": {**app_input, "layout": "NHWC" if channels_last else "NCHW"}},
                    options=options,
                )
                fed = replace(inputs, images=_channels_last(inputs.images)) if channels_last else inputs
                result = _convert_one(name, request, fed, reference, check)
                result.layout = "NHWC" if channels_last else ("image" if not exporter.takes_tensor_input else "NCHW")
                results.append(result)
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
                "input": app_input,
                "classes": spec.num_classes,
                "labels": "labels.txt" if labels else None,
                "params": cost.params,
                "macs": cost.macs,
                "formats": [asdict(r) for r in results],
                "check": {
                    "inputs": inputs.description if check else "skipped (--no-check)",
                    "tolerance": TOLERANCE,
                    "tolerance_scale": "x max(1, max |PyTorch output| on the check inputs)",
                    "int8_top1_agreement": INT8_AGREEMENT,
                },
                "versions": {**versions(), **{k: v for n in formats for k, v in FORMATS.create(n).versions().items()}},
            },
        )
    return results


def _convert_one(name: str, request: ExportRequest, inputs: CheckInputs, reference: np.ndarray, check: bool):
    exporter = FORMATS.create(name)
    precision = request.precision
    missing = exporter.missing()
    if missing:
        verdict = f"not installed ({missing}): pip install mobileprune[{exporter.extra}]"
        return FormatResult(name, None, precision, None, 0.0, verdict, None, False)
    started = time.time()
    try:
        # converters print their own progress; the summary table is what the user reads
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            path = exporter.export(request)
    except Exception as exc:  # converters raise anything; report the op/format and carry on
        message = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        verdict = f"FAILED to convert to {name}: {type(exc).__name__}: {message}"
        return FormatResult(name, None, precision, None, round(time.time() - started, 2), verdict, None, False)
    seconds = round(time.time() - started, 2)
    size_mb = round(_size(path) / 1e6, 3)
    result = FormatResult(name, path.name, precision, size_mb, seconds, "skipped", None, True, notes=request.notes)
    if not check:
        return result
    images = exporter.representable(inputs.images, request.spec)
    if images is not inputs.images:  # e.g. rounded to 8-bit pixels: PyTorch must see the same
        with torch.no_grad():
            reference = request.model(torch.from_numpy(images)).numpy()
    outputs = exporter.run(path, images)
    if isinstance(outputs, str):  # cannot run here; the format may still describe itself
        result.details = exporter.describe(path)
        result.check = outputs + (f" (spec read back: {result.details['ops']} ops)" if result.details else "")
        return result
    result.max_abs_diff = float(np.abs(outputs - reference).max())
    result.check, result.ok = judge(precision, outputs, reference, inputs)
    return result


def judge(precision: str, outputs: np.ndarray, reference: np.ndarray, inputs: CheckInputs) -> tuple[str, bool]:
    """The verdict line and pass/fail of one file's outputs against PyTorch's."""
    diff = float(np.abs(outputs - reference).max())
    if precision in TOLERANCE:
        # relative to the outputs' scale: float32 keeps ~7 digits, so random-weight networks whose logits
        # reach 1e11 differ by 1e4 in every runtime; below 1 the tolerance stays absolute
        scale = max(1.0, float(np.abs(reference).max()))
        tolerance = TOLERANCE[precision] * scale
        bound = (
            f"{tolerance:g}"
            if scale == 1.0
            else f"{tolerance:.1e} = {TOLERANCE[precision]:g} x output scale {scale:.3g}"
        )
        if diff <= tolerance:
            return f"passed (max |diff| {diff:.1e}" + (f" <= {bound})" if scale > 1.0 else ")"), True
        return f"FAILED (max |diff| {diff:.1e} > {bound})", False
    agreement = float((outputs.argmax(1) == reference.argmax(1)).mean())
    if not inputs.real:  # top-1 on noise says nothing about a quantized model's accuracy
        return f"not checked: needs real images (--data); top-1 agreement {agreement:.2f} on random inputs", True
    if agreement >= INT8_AGREEMENT:
        return f"passed (top-1 agreement {agreement:.3f} on {len(outputs)} images)", True
    return f"FAILED (top-1 agreement {agreement:.3f} < {INT8_AGREEMENT} on {len(outputs)} images)", False


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def _channels_last(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1))
