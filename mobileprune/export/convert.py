"""`convert`: one call, every requested format, each checked against PyTorch, one bundle folder.

A format whose converter is missing or fails is reported (with the extra to install, or the error) and
the other formats are still produced; the bundle's metadata.json says what happened to each.
"""

from __future__ import annotations

import io
import time
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..artifacts import LoadedModel
from ..atomic import atomic_folder, prepare_output_dir, write_json
from ..errors import UserError
from ..models import ModelSpec
from ..models.labels import class_names
from ..progress import SILENT, Progress
from ..prune.cost import count_cost
from ..quiet import native_output_silenced
from ..reporting.provenance import versions
from ..train.data import calibration_batches, open_data
from ..version import __version__
from .app_input import AppInput
from .base import FORMATS, Exporter, ExportRequest, ModelAbout

TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}  # max |logit diff| against PyTorch, per unit of max(1, max |logit|)
INT8_TOP1_LOSS = 2.0  # int8: most top-1 points the file may cost, as estimated from PyTorch's probabilities
PRECISIONS = (*TOLERANCE, "int8")


@dataclass
class CheckInputs:
    """The fixed batch every file is compared on, and what it is (the int8 check needs real images)."""

    images: np.ndarray  # NCHW float32, normalised as the model expects
    real: bool
    description: str


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
    input: dict | None = None  # what the app feeds this file (layout, range, normalisation)
    notes: list[str] = field(default_factory=list)  # what the exporter chose, e.g. the int8 scheme
    zip_mb: float | None = None  # the download: the file deflated, as app stores and bundles compress it


def parse_formats(text: str) -> list[str]:
    return _parse_choices(text, "format", FORMATS.names())


def parse_precisions(text: str) -> list[str]:
    return _parse_choices(text, "precision", list(PRECISIONS))


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
    layout: str | None = None,
    normalize: bool | None = None,
    about: ModelAbout | None = None,
    check_images: int = 64,
    calibration_images: int = 100,
    coreml_target: str | None = None,
    force: bool = False,
    progress: Progress = SILENT,
) -> list[FormatResult]:
    """Write one file per format into `out` and check each numerically; returns per-format results.

    `data` (an image folder) gives real check images and the int8 calibration set; without it the
    checks use seeded random inputs and int8 falls back to dynamic-range where a format has it (TFLite);
    the others write no int8 file and say so. `layout` and `normalize`
    (True: the file takes 0–1 RGB and normalises itself) override each format's own default input;
    `labels` default to the spec's class names (ImageNet presets), `about` to a generated description.
    """
    options = {"coreml_target": coreml_target} if coreml_target else {}
    check_export_options(formats, options)
    out = check_bundle_dir(out, force)
    model, spec = loaded.model.eval(), loaded.spec
    labels = labels or class_names(spec)
    example = torch.randn(1, 3, spec.input_size, spec.input_size)
    cost = count_cost(model, example)
    about = described(about, spec, cost.params, cost.macs)
    calibration = None
    if data is not None:
        progress.log(f"reading check and calibration images from {data} ...")
        inputs, calibration = real_images(data, spec, check_images, calibration_images)
    else:
        inputs = random_inputs(spec.input_size)
    with torch.no_grad():
        reference = model(torch.from_numpy(inputs.images)).numpy()
    results: list[FormatResult] = []
    with atomic_folder(out, replace=force, is_ours=is_bundle) as tmp:
        for name in formats:
            exporter = FORMATS.create(name)
            # requested precisions this format can write; its own default when it can write none of them
            writable = exporter.writable(calibration is not None)
            wanted = [p for p in (precisions or []) if p in writable] or [writable[0]]
            for precision in [p for p in (precisions or []) if p in exporter.precisions and p not in writable]:
                progress.log(f"[yellow]{name}: no {precision} file without calibration images (--data)[/yellow]")
            app_input = file_input(exporter, layout, normalize)
            fed = replace(inputs, images=app_input.feed(inputs.images, spec))
            for precision in wanted:
                progress.log(f"converting to {name} ({precision}, {input_words(exporter, app_input)}) ...")
                request = ExportRequest(
                    app_input.wrap(model, spec),
                    spec,
                    torch.from_numpy(app_input.feed(example.numpy(), spec)),
                    tmp,
                    labels,
                    precision,
                    app_input.feed(calibration, spec) if calibration is not None else None,
                    {
                        "arch": spec.arch,
                        "input": app_input.describe(spec),
                        "classes": spec.num_classes,
                        "labels": labels,
                    },
                    options=options,
                    app_input=app_input,
                    about=about,
                )
                result = _convert_one(name, request, fed, reference, check)
                result.layout = app_input.layout.upper() if exporter.takes_tensor_input else "image"
                result.input = request.metadata["input"] if exporter.takes_tensor_input else None
                results.append(result)
        if labels:
            (tmp / "labels.txt").write_text("\n".join(labels) + "\n")
        write_json(
            tmp / "metadata.json",
            {
                "model": {
                    "arch": spec.arch,
                    "source": loaded.source,
                    "sha256": loaded.sha256,
                    "weights": loaded.weights,
                },
                "about": asdict(about),
                "input": AppInput().describe(spec),  # PyTorch's; each format's own is in formats[].input
                "classes": spec.num_classes,
                "labels": "labels.txt" if labels else None,
                "params": cost.params,
                "macs": cost.macs,
                "formats": [asdict(r) for r in results],
                "check": {
                    "inputs": inputs.description if check else "skipped (--no-check)",
                    "tolerance": TOLERANCE,
                    "tolerance_scale": "x max(1, max |PyTorch output| on the check inputs)",
                    "int8_max_top1_loss_points": INT8_TOP1_LOSS,  # estimated from PyTorch's probabilities
                },
                "versions": {**versions(), **{k: v for n in formats for k, v in FORMATS.create(n).versions().items()}},
            },
        )
    return results


def file_input(exporter: Exporter, layout: str | None, normalize: bool | None) -> AppInput:
    """The input a format's file takes: the user's choice where given, else the format's own default."""
    if not exporter.takes_tensor_input:  # an image input normalises itself (Core ML)
        return AppInput()
    default = exporter.default_input
    return AppInput(
        layout if layout is not None else default.layout,
        normalize if normalize is not None else default.normalized_in_model,
    )


def input_words(exporter: Exporter, app_input: AppInput) -> str:
    if not exporter.takes_tensor_input:
        return "image input"
    return f"{app_input.layout.upper()}, " + ("0-1 RGB input" if app_input.normalized_in_model else "normalised input")


def described(about: ModelAbout | None, spec: ModelSpec, params: int, macs: int) -> ModelAbout:
    """`about` with a blank name/description filled in from the model (arch, input, classes, cost)."""
    about = about or ModelAbout("", "", version="1")
    description = (
        f"{spec.arch} image classifier, {spec.input_size}x{spec.input_size} RGB, {spec.num_classes} classes, "
        f"{params / 1e6:.2f} M parameters, {macs / 1e6:.0f} M MACs; written by mobileprune {__version__}"
    )
    return replace(about, name=about.name or spec.arch, description=about.description or description)


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
        with native_output_silenced():
            path = exporter.export(request)
    except Exception as exc:  # converters raise anything; report the op/format and carry on
        message = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        verdict = f"FAILED to convert to {name}: {type(exc).__name__}: {message}"
        return FormatResult(name, None, precision, None, round(time.time() - started, 2), verdict, None, False)
    seconds = round(time.time() - started, 2)
    size_mb = round(_size(path) / 1e6, 3)
    result = FormatResult(name, path.name, precision, size_mb, seconds, "skipped", None, True, notes=request.notes)
    result.zip_mb = round(zipped_size(path) / 1e6, 3)
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
    client = exporter.client_check(path, request, images)
    if client is not None:
        result.check, result.ok = f"{result.check}; {client[0]}", result.ok and client[1]
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
    change = expected_top1_change(outputs, reference)
    measured = (
        f"estimated top-1 change {round(change, 1) + 0.0:+.1f} points (PyTorch's probabilities), "  # no -0.0
        f"top-1 agreement {agreement:.3f} on {len(outputs)} images"
    )
    if change >= -INT8_TOP1_LOSS:
        return f"passed ({measured})", True
    return f"FAILED ({measured}; more than {INT8_TOP1_LOSS:g} points lost)", False


def expected_top1_change(outputs: np.ndarray, reference: np.ndarray) -> float:
    """Top-1 points a file is expected to gain (negative: lose) against PyTorch on these images, without labels.

    Where the two top-1 answers differ, PyTorch's own probabilities say how likely each answer is to be
    right: int8 flipping two near-equal classes costs almost nothing, flipping away from a class PyTorch was
    sure of costs almost a whole image. Top-1 agreement counts both alike, so it fails int8 files that
    flip near-ties often but cost little accuracy (README, "The int8 check"). Outputs that already
    are probabilities (rows of non-negative numbers summing to 1) are used as they are.
    """
    reference = reference.astype(np.float64)
    is_probability = (reference >= 0).all() and np.allclose(reference.sum(1), 1.0, atol=1e-3)
    if not is_probability:
        shifted = np.exp(reference - reference.max(1, keepdims=True))
        reference = shifted / shifted.sum(1, keepdims=True)
    rows = np.arange(len(reference))
    return float(100 * (reference[rows, outputs.argmax(1)] - reference[rows, reference.argmax(1)]).mean())


def zipped_size(path: Path) -> int:
    """Bytes of `path` (a file, or a folder such as an .mlpackage) in a deflate zip: the download size."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if item.is_file():
                archive.write(item, item.relative_to(path.parent))
    return len(buffer.getvalue())


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size
