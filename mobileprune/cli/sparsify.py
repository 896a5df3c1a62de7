"""`mobileprune sparsify`: zero individual weights (masks kept through fine-tuning), then write the output folder."""

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .. import api
from ..errors import UserError
from ..progress import Progress
from ..reporting.console import print_report
from ..sparsify.config import SparsifyConfig, parse_sparsity
from ..sparsify.methods import METHODS
from ..train.loop import TrainConfig
from .app import app
from .checkpointing import CheckpointEvery, Force, Resume, open_checkpoint, replaces
from .convert import convert_and_report, formats
from .options import with_options
from .shrink import default_out


@app.command()
@with_options(("model",))
def sparsify(
    model: Annotated[str, typer.Argument(help="Checkpoint, zoo name or shrink output (then: hybrid in two steps).")],
    load_args: dict,
    sparsity: Annotated[str, typer.Option(help="Fraction of zero weights in the convs and linears, in [0, 1).")],
    method: Annotated[str, typer.Option(help=f"How: {', '.join(METHODS.names())}.")] = "gradual",
    scope: Annotated[
        str,
        typer.Option(
            help="erk: small layers denser (Erdős–Rényi-Kernel); layer: all equally sparse; global: one threshold."
        ),
    ] = "erk",
    method_option: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE for the method (see `mobileprune plugins`).")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="Images to fine-tune and calibrate on (unlabeled: --distill).")
    ] = None,
    eval_data: Annotated[Path | None, typer.Option(help="Labelled ImageFolder to measure accuracy on.")] = None,
    distill: Annotated[bool, typer.Option(help="Learn from the dense model (no labels needed).")] = False,
    epochs: Annotated[
        float, typer.Option(help="Fine-tune budget in passes over --data (gradual/lottery prune in it).")
    ] = 0.0,
    retrain_check: Annotated[
        bool,
        typer.Option(
            "--retrain-check/--no-retrain-check",
            help="magnitude/obs: keep the fine-tune's best epoch only if it lowered the loss on the validation "
            "images (held-out 10% of --data when it has no val/ folder).",
        ),
    ] = True,
    patience: Annotated[
        int,
        typer.Option(help="With --retrain-check: stop the fine-tune after this many epochs without a better score."),
    ] = 0,
    lr: Annotated[float, typer.Option(help="Fine-tune learning rate (AdamW).")] = 1e-4,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 32,
    calibration_images: Annotated[
        int, typer.Option(help="obs: images whose activations give each layer's Hessian.")
    ] = 128,
    seed: Annotated[int, typer.Option(help="Seed for data order and random choices.")] = 0,
    device: Annotated[str, typer.Option(help="Where fine-tuning runs: cpu, cuda, cuda:1.")] = "cpu",
    out: Annotated[Path | None, typer.Option(help="Output folder [default: MODEL's name + .sparse].")] = None,
    force: Force = False,
    resume: Resume = False,
    checkpoint_every: CheckpointEvery = 100,
    export: Annotated[str | None, typer.Option(help="Also convert: e.g. tflite,onnx (into OUT/bundle).")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars or log lines.")] = False,
) -> None:
    """Zero SPARSITY of the weights of every conv and linear (the stem and depthwise convs stay dense)."""
    console = Console(quiet=quiet)
    options = METHODS.parse_options(method, method_option) if method in METHODS else {}
    config = SparsifyConfig(
        sparsity=parse_sparsity(sparsity),
        method=method,
        scope=scope,
        epochs=epochs,
        batch_size=batch_size,
        calibration_images=calibration_images,
        distill=distill,
        retrain_check=retrain_check,
        patience=patience,
        train=TrainConfig(lr=lr),
        seed=seed,
        device=device,
        method_options=options,
    )
    config.validate()
    if lr <= 0:
        raise UserError(f"--lr must be above 0, not {lr}")
    out = out or default_out(model, ".sparse")
    checkpoint = open_checkpoint(out, checkpoint_every, resume, force)
    export_formats = formats(export) if export else []
    loaded = api.load_model(model, **load_args)
    if loaded.weights == "random":
        console.print(f"[yellow]{model}: random weights (sizes are real; accuracy is meaningless)[/yellow]")
    splits, evals = api.open_shrink_data(loaded.spec, data, eval_data, distill=distill, seed=seed)
    try:
        result = api.sparsify(loaded, config, splits, evals, Progress(console, bars=not quiet), checkpoint)
    except UserError:
        checkpoint.discard()
        raise
    result.report.command = "mobileprune " + shlex.join(sys.argv[1:])
    api.save_output(result, out, force=replaces(out, force))
    print_report(result.report, console)
    console.print(
        f"wrote {out}/ (model.pt2, model.safetensors, masks.safetensors, plan.json, report.json)", highlight=False
    )
    if export_formats:
        convert_and_report(api.load_model(str(out)), export_formats, out / "bundle", console, check=True)
