"""`mobileprune convert`: one bundle of app-ready files, each checked against PyTorch."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .. import api
from ..errors import UserError
from ..export import FORMATS, ModelAbout, parse_formats, parse_layout, parse_normalize, parse_precisions
from ..export.convert import check_bundle_dir, check_export_options
from ..progress import Progress
from ..reporting.console import print_conversion
from .app import app
from .options import read_labels, with_options


def formats(text: str) -> list[str]:
    return parse_formats(text)


@app.command()
@with_options(("model",))
def convert(
    model: Annotated[str, typer.Argument(help="A shrink output folder, checkpoint or zoo name.")],
    load_args: dict,
    to: Annotated[str, typer.Option(help=f"Formats: {','.join(FORMATS.names())}.")] = "tflite,coreml,onnx,executorch",
    out: Annotated[Path, typer.Option(help="Bundle folder.")] = Path("bundle"),
    force: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
    labels: Annotated[Path | None, typer.Option(help="Class names, one per line.")] = None,
    precision: Annotated[
        str,
        typer.Option(
            help="fp32, fp16 (TFLite, Core ML), int8 (TFLite, Core ML's weights; ONNX, ExecuTorch with --data), "
            "comma-separated."
        ),
    ] = "fp32",
    data: Annotated[
        Path | None, typer.Option(help="Images: real check inputs and int8 calibration (else random inputs).")
    ] = None,
    layout: Annotated[
        str | None,
        typer.Option(help="Tensor input layout: nhwc (camera; the tflite default) or nchw (PyTorch's; the others)."),
    ] = None,
    normalize: Annotated[
        str | None,
        typer.Option(
            help="in-model: the file takes 0-1 RGB and normalises per channel itself (the tflite default); "
            "in-app: it takes normalised tensors like PyTorch (the others)."
        ),
    ] = None,
    author: Annotated[str, typer.Option(help="Author written into the files' metadata (TFLite, Core ML).")] = "",
    license: Annotated[str, typer.Option(help="License written into the files' metadata.")] = "",
    version: Annotated[str, typer.Option(help="Model version written into the files' metadata.")] = "1",
    description: Annotated[
        str | None, typer.Option(help="One-line description for the metadata (default: arch, size, cost).")
    ] = None,
    calibration_images: Annotated[int, typer.Option(help="int8 calibration images taken from --data.")] = 100,
    check_images: Annotated[int, typer.Option(help="Real images the checks run on (with --data).")] = 64,
    coreml_target: Annotated[str, typer.Option(help="Core ML minimum deployment target: iOS16, iOS17, ...")] = "iOS16",
    check: Annotated[bool, typer.Option("--check/--no-check", help="Compare every file with PyTorch.")] = True,
    quiet: Annotated[bool, typer.Option(help="No log lines.")] = False,
) -> None:
    """Write app-ready files (one per format), each checked numerically against PyTorch."""
    console = Console(quiet=quiet)
    wanted = formats(to)
    precisions = parse_precisions(precision)
    channel_layout = parse_layout(layout) if layout is not None else None
    normalized_in_model = parse_normalize(normalize) if normalize is not None else None
    if calibration_images < 1 or check_images < 1:
        raise UserError("--calibration-images and --check-images must be at least 1")
    check_export_options(wanted, {"coreml_target": coreml_target})
    check_bundle_dir(out, force)
    names = read_labels(labels) if labels else None
    loaded = api.load_model(model, **load_args)
    if names and len(names) != loaded.spec.num_classes:
        raise UserError(f"--labels has {len(names)} names, the model predicts {loaded.spec.num_classes} classes")
    options = {
        "data": data,
        "layout": channel_layout,
        "normalize": normalized_in_model,
        "about": ModelAbout("", description or "", version, author, license),  # blanks: convert describes
        "calibration_images": calibration_images,
        "check_images": check_images,
        "coreml_target": coreml_target,
    }
    convert_and_report(loaded, wanted, out, console, check, names, force, precisions, options)


def convert_and_report(
    loaded, wanted, out, console, check, labels=None, force=False, precisions=None, options=None
) -> None:
    """Convert, print the summary table, and exit 1 when any file failed its conversion or check."""
    results = api.convert(
        loaded,
        wanted,
        out,
        check=check,
        labels=labels,
        precisions=precisions,
        force=force,
        progress=Progress(console),
        **(options or {}),
    )
    print_conversion(results, console)
    console.print(f"wrote {out}/ (metadata.json has sizes, checks and converter versions)", highlight=False)
    if not all(r.ok for r in results):
        raise typer.Exit(1)
