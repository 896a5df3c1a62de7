"""The `mobileprune` command: a thin layer over the Python API.

User errors print one line and exit 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Structured pruning for mobile CNNs.",
)
err = Console(stderr=True)
_debug = False


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    global _debug
    _debug = debug


@app.command()
def shrink(
    model: Annotated[str, typer.Argument(help="Checkpoint, zoo name (mobilenet_v2, timm:NAME, ...) or shrink output.")],
    target: Annotated[str, typer.Option(help="Fraction to keep, in (0, 1].")] = "0.84",
    arch: Annotated[str | None, typer.Option(help="Architecture of a state-dict checkpoint.")] = None,
    by: Annotated[str, typer.Option(help="What the target counts: params or macs.")] = "params",
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("shrunk"),
    force: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
    data: Annotated[Path | None, typer.Option(help="ImageFolder root (train/ and val/) for retraining.")] = None,
    eval_data: Annotated[Path | None, typer.Option(help="Labelled ImageFolder to measure accuracy on.")] = None,
    distill: Annotated[bool, typer.Option(help="Learn from the unpruned model (no labels needed).")] = False,
    criterion: Annotated[str, typer.Option(help="Channel ranking: l1, bn, sss, taylor, hessian, ucb, random.")] = "l1",
    allocation: Annotated[
        str, typer.Option(help="Per-layer amounts: sensitivity, uniform or global (one ranking).")
    ] = "sensitivity",
    max_layer_ratio: Annotated[float, typer.Option(help="global: most a layer may lose.")] = 0.75,
    sparsity_train: Annotated[
        float, typer.Option(help="Epochs of sparsity training first: L1 on BN scales (bn) or channel gates (sss).")
    ] = 0.0,
    l1_gamma: Annotated[
        float, typer.Option(help="Sparse penalty: pull on every |BN scale| or sss gate towards 0 per step.")
    ] = 1e-4,
    ucb_pulls: Annotated[float, typer.Option(help="ucb: bandit pulls per channel (its budget).")] = 2.0,
    schedule: Annotated[str, typer.Option(help="layerwise, oneshot or greedy (measured step by step).")] = "layerwise",
    round_to: Annotated[int, typer.Option(help="Channel counts become multiples of this.")] = 8,
    steps_per_layer: Annotated[int, typer.Option(help="Retraining batches after each layer.")] = 50,
    epochs: Annotated[float, typer.Option(help="Final fine-tune epochs.")] = 0.0,
    optimizer: Annotated[str, typer.Option(help="adamw or sgd (nesterov, momentum 0.9).")] = "adamw",
    lr: Annotated[float, typer.Option(help="Retraining learning rate.")] = 3e-5,
    batch_size: Annotated[int, typer.Option(help="Batch size for retraining and evaluation.")] = 32,
    temperature: Annotated[float, typer.Option(help="Distillation temperature.")] = 2.0,
    distill_loss: Annotated[
        str, typer.Option(help="centered (default; suits images unlike the model's training data) or kl.")
    ] = "centered",
    calibration_images: Annotated[int, typer.Option(help="Images for sensitivity measurement.")] = 32,
    input_size: Annotated[int | None, typer.Option(help="Override the preset's input size.")] = None,
    num_classes: Annotated[int | None, typer.Option(help="Classes of a checkpoint's classifier.")] = None,
    pretrained: Annotated[bool, typer.Option(help="Download the library's weights (needs internet).")] = False,
    trust_pickle: Annotated[bool, typer.Option(help="Allow loading a pickled nn.Module (runs its code).")] = False,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    seed: Annotated[int, typer.Option()] = 0,
    export: Annotated[str | None, typer.Option(help="Also convert: e.g. tflite,coreml (into OUT/bundle).")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars or log lines.")] = False,
) -> None:
    """Remove whole conv filters until TARGET of the parameters (or MACs) remain."""

    import torch

    from .data import open_data, open_image_folder
    from .output import check_output_dir, save_output
    from .progress import Progress
    from .report import print_report
    from .shrink import ShrinkConfig
    from .shrink import shrink as run_shrink
    from .training import TrainConfig

    console = Console(quiet=quiet)
    config = ShrinkConfig(
        target=_parse_target(target),
        by=by,
        criterion=criterion,
        allocation=allocation,
        max_layer_ratio=max_layer_ratio,
        sparsity_train=sparsity_train,
        l1_gamma=l1_gamma,
        ucb_pulls=ucb_pulls,
        schedule=schedule,
        round_to=round_to,
        steps_per_layer=steps_per_layer,
        epochs=epochs,
        distill=distill,
        batch_size=batch_size,
        calibration_images=calibration_images,
        seed=seed,
        device=device,
        train=TrainConfig(
            optimizer=optimizer, lr=lr, distill=distill, temperature=temperature, distill_loss=distill_loss
        ),
    )
    config.validate()
    check_output_dir(out, force)
    formats = _parse_formats(export) if export else []
    torch.manual_seed(seed)  # random-weight models are built here: same seed, same model, same result
    loaded = _load(model, arch, num_classes, input_size, trust_pickle, pretrained)
    spec = loaded.spec
    progress = Progress(console, bars=not quiet)
    if loaded.weights == "random":
        progress.log(
            f"[yellow]{model}: no checkpoint given, using random weights "
            "(sizes and speed are real; accuracy is meaningless)[/yellow]"
        )
    splits = open_data(data, spec.input_size, spec.mean, spec.std, seed) if data else None
    evals = open_image_folder(eval_data, spec.input_size, spec.mean, spec.std) if eval_data else None
    result = run_shrink(loaded, config, splits, evals, progress)
    save_output(result, out, force=force)
    print_report(result.report, console)
    console.print(f"wrote {out}/ (model.pt2, model.safetensors, plan.json, report.json)", highlight=False)
    if formats:
        _convert_and_report(_load(str(out), None, None, None, False), formats, out / "bundle", console, True, None)


@app.command()
def convert(
    model: Annotated[str, typer.Argument(help="A shrink output folder, checkpoint or zoo name.")],
    to: Annotated[str, typer.Option(help="Formats: tflite,coreml,onnx,executorch.")] = "tflite,coreml,onnx,executorch",
    out: Annotated[Path, typer.Option(help="Bundle folder.")] = Path("bundle"),
    force: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
    arch: Annotated[str | None, typer.Option(help="Architecture of a state-dict checkpoint.")] = None,
    num_classes: Annotated[int | None, typer.Option(help="Classes of a checkpoint's classifier.")] = None,
    input_size: Annotated[int | None, typer.Option(help="Override the preset's input size.")] = None,
    labels: Annotated[Path | None, typer.Option(help="Class names, one per line.")] = None,
    precision: Annotated[
        str, typer.Option(help="fp32, fp16 (TFLite, Core ML), int8 (TFLite), comma-separated: fp32,int8.")
    ] = "fp32",
    data: Annotated[
        Path | None, typer.Option(help="Images: real check inputs and int8 calibration (else random inputs).")
    ] = None,
    layout: Annotated[str, typer.Option(help="Tensor input layout: nchw (PyTorch's) or nhwc (camera).")] = "nchw",
    calibration_images: Annotated[int, typer.Option(help="int8 calibration images taken from --data.")] = 100,
    check_images: Annotated[int, typer.Option(help="Real images the checks run on (with --data).")] = 64,
    coreml_target: Annotated[str, typer.Option(help="Core ML minimum deployment target: iOS16, iOS17, ...")] = "iOS16",
    check: Annotated[bool, typer.Option("--check/--no-check", help="Compare every file with PyTorch.")] = True,
    trust_pickle: Annotated[bool, typer.Option(help="Allow loading a pickled nn.Module (runs its code).")] = False,
    quiet: Annotated[bool, typer.Option(help="No log lines.")] = False,
) -> None:
    """Write app-ready files (one per format), each checked numerically against PyTorch."""

    from .output import check_output_dir

    console = Console(quiet=quiet)
    formats = _parse_formats(to)
    from .export import parse_layout, parse_precisions

    precisions = parse_precisions(precision)
    channel_layout = parse_layout(layout)
    if calibration_images < 1 or check_images < 1:
        raise UserError("--calibration-images and --check-images must be at least 1")
    if "coreml" in formats and importlib.util.find_spec("coremltools"):
        from .export.coreml_format import coreml_target as check_target

        check_target(coreml_target)  # a wrong name is refused before any work
    check_output_dir(out, force)
    names = _read_labels(labels) if labels else None
    loaded = _load(model, arch, num_classes, input_size, trust_pickle)
    if names and len(names) != loaded.spec.num_classes:
        raise UserError(f"--labels has {len(names)} names, the model predicts {loaded.spec.num_classes} classes")
    options = {
        "data": data,
        "layout": channel_layout,
        "calibration_images": calibration_images,
        "check_images": check_images,
        "coreml_target": coreml_target,
    }
    _convert_and_report(loaded, formats, out, console, check, names, force, precisions, options)


def _parse_formats(text: str) -> list[str]:
    from .export import parse_formats

    return parse_formats(text)


def _convert_and_report(
    loaded, formats, out, console, check, labels, force=False, precisions=None, options=None
) -> None:
    from .export import convert as run_convert
    from .progress import Progress
    from .report import print_conversion

    results = run_convert(
        loaded,
        formats,
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


def _load(model, arch, num_classes, input_size, trust_pickle, pretrained=False):
    """MODEL as `shrink` and `convert` both accept it, with the command-line overrides applied."""
    from dataclasses import replace

    from .loading import load_model

    kwargs = {"num_classes": num_classes} if num_classes else {}
    loaded = load_model(model, arch, pretrained=pretrained, trust_pickle=trust_pickle, arch_kwargs=kwargs)
    if input_size:
        loaded.spec = replace(loaded.spec, input_size=input_size)
    return loaded


def _read_labels(path: Path) -> list[str]:
    if not path.is_file():
        raise UserError(f"--labels '{path}' is not a file (expected one class name per line)")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


@app.command()
def sweep(
    model: Annotated[str, typer.Argument(help="Checkpoint or zoo name, as for shrink.")],
    targets: Annotated[str, typer.Option(help="Targets to keep, e.g. 0.9,0.8,0.7.")] = "0.84,0.7,0.5",
    criteria: Annotated[
        str, typer.Option(help="Criteria to compare, e.g. l1,bn,taylor,random; greedy = the greedy schedule.")
    ] = "l1,taylor,random",
    out: Annotated[Path, typer.Option(help="Sweep folder (re-run the same command to resume).")] = Path("sweep"),
    arch: Annotated[str | None, typer.Option(help="Architecture of a state-dict checkpoint.")] = None,
    num_classes: Annotated[int | None, typer.Option(help="Classes of a checkpoint's classifier.")] = None,
    input_size: Annotated[int | None, typer.Option(help="Override the preset's input size.")] = None,
    data: Annotated[Path | None, typer.Option(help="ImageFolder root for retraining (and val/ accuracy).")] = None,
    eval_data: Annotated[Path | None, typer.Option(help="Labelled ImageFolder to measure accuracy on.")] = None,
    distill: Annotated[bool, typer.Option(help="Learn from the unpruned model (no labels needed).")] = False,
    by: Annotated[str, typer.Option(help="What the targets count: params or macs.")] = "params",
    allocation: Annotated[str, typer.Option(help="sensitivity, uniform or global.")] = "sensitivity",
    schedule: Annotated[str, typer.Option(help="layerwise, oneshot or greedy (measured step by step).")] = "oneshot",
    steps_per_layer: Annotated[int, typer.Option(help="Retraining batches after each layer.")] = 20,
    epochs: Annotated[float, typer.Option(help="Final fine-tune epochs (the same for every point).")] = 0.0,
    lr: Annotated[float, typer.Option(help="Retraining learning rate.")] = 3e-5,
    calibration_images: Annotated[int, typer.Option(help="Images for sensitivity and data criteria.")] = 32,
    sparsity_train: Annotated[float, typer.Option(help="bn and sss points: epochs of sparsity training first.")] = 0.0,
    l1_gamma: Annotated[
        float, typer.Option(help="Sparse penalty: pull on every |BN scale| or sss gate towards 0 per step.")
    ] = 1e-4,
    seed: Annotated[int, typer.Option()] = 0,
    quiet: Annotated[bool, typer.Option(help="No log lines.")] = False,
) -> None:
    """Shrink to every target with every criterion (same retraining budget), then plot accuracy vs size."""
    from .data import open_data, open_image_folder
    from .progress import Progress
    from .shrink import ShrinkConfig
    from .sweep import run_sweep
    from .training import TrainConfig

    console = Console(quiet=quiet)
    target_list = [_parse_target(t) for t in targets.split(",") if t.strip()]
    names = [c.strip() for c in criteria.split(",") if c.strip()]
    config = ShrinkConfig(
        target=target_list[0] if target_list else 1.0,
        by=by,
        allocation=allocation,
        schedule=schedule,
        steps_per_layer=steps_per_layer,
        epochs=epochs,
        distill=distill,
        calibration_images=calibration_images,
        sparsity_train=sparsity_train,
        l1_gamma=l1_gamma,
        seed=seed,
        train=TrainConfig(lr=lr, distill=distill),
    )
    from .sweep import method_config

    for name in names:
        method_config(config, name, config.target).validate()  # an unknown method is refused before any work
    if not target_list or not names:
        raise UserError("--targets and --criteria each need at least one value")
    first = _load(model, arch, num_classes, input_size, False)
    spec = first.spec
    splits = open_data(data, spec.input_size, spec.mean, spec.std, seed) if data else None
    evals = open_image_folder(eval_data, spec.input_size, spec.mean, spec.std) if eval_data else None
    points = run_sweep(
        lambda: _load(model, arch, num_classes, input_size, False),
        target_list,
        names,
        config,
        out,
        splits,
        evals,
        Progress(console),
    )
    from .report import print_sweep

    print_sweep(points, console)
    console.print(f"wrote {out}/ (sweep.csv, sweep.json, pareto.png, points/)", highlight=False)


@app.command("plot-filters")
def plot_filters(
    model: Annotated[str, typer.Argument(help="Checkpoint, zoo name or shrink output.")],
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("filters.png"),
    arch: Annotated[str | None, typer.Option(help="Architecture of a state-dict checkpoint.")] = None,
    num_classes: Annotated[int | None, typer.Option(help="Classes of a checkpoint's classifier.")] = None,
) -> None:
    """Draw each conv layer's filter L1 norms: dead or near-dead filters show up at the bottom."""
    from .filters import filter_norms, plot_filter_norms

    loaded = _load(model, arch, num_classes, None, False)
    norms = filter_norms(loaded.model)
    path = plot_filter_norms(norms, out, title=f"{loaded.spec.arch}: filter L1 norms per conv layer")
    dead = sum(int((n <= 1e-8).sum()) for n in norms.values())
    console = Console()
    console.print(f"{len(norms)} conv layers, {sum(len(n) for n in norms.values())} filters, {dead} all-zero")
    console.print(f"wrote {path}", highlight=False)


@app.command()
def bench(
    models: Annotated[
        list[str], typer.Argument(help="Model files or convert/shrink folders; the first is the baseline.")
    ],
    runtime: Annotated[
        str | None, typer.Option(help="Only these: litert,onnxruntime,executorch,torch,coreml (default: all found).")
    ] = None,
    threads: Annotated[str, typer.Option(help="Thread counts, e.g. 1,2,4.")] = "1",
    runs: Annotated[int, typer.Option(help="Timed runs per model (at least).")] = 100,
    min_seconds: Annotated[float, typer.Option(help="Time each model for at least this long.")] = 2.0,
    warmup: Annotated[int, typer.Option(help="Untimed runs first.")] = 10,
    device: Annotated[str | None, typer.Option(help="adb or adb:SERIAL: run on an Android phone.")] = None,
    benchmark_binary: Annotated[
        str | None, typer.Option(help="benchmark_model: a local file to push, or its path on the phone.")
    ] = None,
    cpu_mask: Annotated[str | None, typer.Option(help="taskset mask on the phone, e.g. f0 (big cores).")] = None,
    compute_units: Annotated[
        str, typer.Option(help="Core ML (macOS): cpu or all (GPU and Neural Engine too).")
    ] = "all",
    as_json: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON here.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG bar chart of FPS here.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
) -> None:
    """Time models (FPS, latency percentiles) on the runtimes phones use; several models run interleaved."""
    from .bench import BenchConfig, open_bench_model
    from .bench import bench as run_bench
    from .bench.runtimes import RUNTIMES
    from .progress import Progress
    from .report import print_bench

    console = Console(quiet=quiet)
    thread_counts = _parse_counts(threads, "--threads")
    runtimes = [r.strip() for r in runtime.split(",") if r.strip()] if runtime else None
    for name in runtimes or []:
        RUNTIMES.create(name)  # an unknown name is refused before any work
    if runs < 1 or min_seconds < 0 or warmup < 0:
        raise UserError("--runs must be at least 1, --min-seconds and --warmup at least 0")
    labels: dict[str, int] = {}
    opened = []
    for argument in models:  # the same model twice (a noise check) gets two labels
        labels[argument] = labels.get(argument, 0) + 1
        label = argument.rstrip("/") + (f" #{labels[argument]}" if labels[argument] > 1 else "")
        opened.append(open_bench_model(argument, label))
    if compute_units not in ("cpu", "all"):
        raise UserError(f"--compute-units takes cpu or all, not '{compute_units}'")
    config = BenchConfig(runtimes, thread_counts, runs, min_seconds, warmup, compute_units)
    if device:
        result = _bench_on_phone(device, benchmark_binary, cpu_mask, opened, config)
    else:
        result = run_bench(opened, config, Progress(console, bars=not quiet))
    print_bench(result, console)
    if as_json:
        as_json.write_text(json.dumps(result.to_json(), indent=2) + "\n")
        console.print(f"wrote {as_json}", highlight=False)
    if plot:
        from .bench.plot import plot_fps

        console.print(f"wrote {plot_fps(result, plot)}", highlight=False)


def _bench_on_phone(device, binary, cpu_mask, models, config):
    from .bench.android import AdbDevice
    from .bench.measure import BenchResult, speedups

    if not device.startswith("adb"):
        raise UserError(f"unknown --device '{device}': use adb or adb:SERIAL")
    phone = AdbDevice.from_spec(device, binary, cpu_mask)
    measurements, skipped = [], []
    for model in models:
        for path in model.files:
            if not path.name.endswith(".tflite"):
                skipped.append(f"{model.label}/{path.name}: the phone runs .tflite files only")
                continue
            measurements += phone.bench(
                model.label, path, config.threads, config.runs, config.warmup, config.min_seconds
            )
    return BenchResult(measurements, speedups(measurements, models), skipped, {"device": device})


def _parse_counts(text: str, option: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{option} takes whole numbers such as 1,2,4, not '{text}'") from None
    if not counts or min(counts) < 1:
        raise UserError(f"{option} takes whole numbers of at least 1, not '{text}'")
    return counts


@app.command()
def info(
    folder: Annotated[Path, typer.Argument(help="A shrink output folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json.")] = False,
) -> None:
    """Show what a shrink run did."""
    from .output import read_report
    from .report import print_report

    report = read_report(folder)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report, Console())


def _parse_target(text: str) -> float:
    from .shrink import parse_target

    return parse_target(text)


def main() -> None:
    """Console entry point: user errors are one line and exit code 2."""
    debug = "--debug" in sys.argv
    try:
        code = app(standalone_mode=False)  # returns typer.Exit's code instead of exiting
        if isinstance(code, int) and code:
            sys.exit(code)
    except UserError as exc:
        if debug:
            raise
        err.print(f"error: {exc}", highlight=False, soft_wrap=True, markup=False)
        sys.exit(2)
    except Exception as exc:
        if type(exc).__name__ == "Abort":
            err.print("aborted")
            sys.exit(130)
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click's (or typer's) usage errors
            if debug:
                raise
            err.print(f"error: {exc.format_message()}", highlight=False, soft_wrap=True, markup=False)
            sys.exit(2)
        if debug:
            raise
        err.print(
            f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
        sys.exit(1)
