"""`mobileprune shrink`: remove whole conv filters until the target is met, then write the output folder."""

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .. import api
from ..errors import UserError
from ..progress import Progress
from ..prune.config import ShrinkConfig
from ..reporting.console import print_report
from ..train import distributed
from ..train.data import DataSplits
from .app import app
from .checkpointing import CheckpointEvery, Force, Resume, open_checkpoint, replaces
from .convert import convert_and_report, formats
from .options import resolution as parse_resolution
from .options import speedup as parse_speedup
from .options import target as parse_target
from .options import with_options

FEW_PHOTOS = 200  # where the README's photo-count curve (one-shot top-1 at 2x) starts to fall steeply


@app.command()
@with_options(("model", "shrink"))
def shrink(
    model: Annotated[str, typer.Argument(help="Checkpoint, zoo name (mobilenet_v2, timm:NAME, ...) or shrink output.")],
    config: ShrinkConfig,
    load_args: dict,
    target: Annotated[str | None, typer.Option(help="Fraction to keep, in (0, 1]. [default: 0.84]")] = None,
    speedup: Annotated[
        str | None, typer.Option(help="Measured speed-up to reach on --runtime: --by latency --target 1/SPEEDUP.")
    ] = None,
    resolution: Annotated[
        str | None,
        typer.Option(
            help="Run the result at N px (the app feeds it N-px images): fewer pixels cut MACs with every weight "
            "kept; --target counts against the model at its own input size and filters take the rest. auto: the "
            "smallest multiple of 32 px that keeps the --by macs target."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder [default: MODEL's name + .shrunk].")] = None,
    force: Force = False,
    resume: Resume = False,
    checkpoint_every: CheckpointEvery = 100,
    data: Annotated[Path | None, typer.Option(help="ImageFolder root (train/ and val/) for retraining.")] = None,
    eval_data: Annotated[Path | None, typer.Option(help="Labelled ImageFolder to measure accuracy on.")] = None,
    pretrained: Annotated[bool, typer.Option(help="Download the library's weights (needs internet).")] = False,
    export: Annotated[str | None, typer.Option(help="Also convert: e.g. tflite,coreml (into OUT/bundle).")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars or log lines.")] = False,
) -> None:
    """Remove whole conv filters until TARGET of the parameters (or MACs) remain.

    Under `torchrun --nproc-per-node N -m mobileprune shrink ...` retraining runs on N processes (DDP).
    """
    import torch

    config.device = distributed.start(config.device)  # under torchrun: join the process group first
    console = Console(quiet=quiet or not distributed.is_main())
    if speedup is not None:
        if target is not None:
            raise UserError("give --target or --speedup, not both")
        config.by, config.target = "latency", 1 / parse_speedup(speedup)
    else:
        config.target = parse_target(target or "0.84")
    config.validate()
    out = out or default_out(model)
    checkpoint = open_checkpoint(out, checkpoint_every, resume, force)
    distributed.barrier()  # every process has checked --out before rank 0 writes its first checkpoint there
    export_formats = formats(export) if export else []
    torch.manual_seed(config.seed)  # random-weight models are built here: same seed, same model, same result
    loaded = api.load_model(model, pretrained=pretrained, **load_args)
    progress = Progress(console, bars=not quiet and distributed.is_main())
    for note in loaded.notes:
        progress.log(note)
    if loaded.weights == "random":
        progress.log(
            f"[yellow]{model}: no checkpoint given, using random weights "
            "(sizes and speed are real; accuracy is meaningless)[/yellow]"
        )
    cut = None
    try:
        if resolution is not None:  # before the images are opened: they are resized for the new size
            config, cut = api.cut_resolution(loaded, config, parse_resolution(resolution))
            progress.log(cut.describe() if cut else api.kept_size_reason(loaded, config))
        elif config.by == "macs" and (smaller := api.auto_size(loaded, config)) is not None:
            progress.log(
                f"[yellow]note: at {smaller} px this network keeps {config.target:g} of the MACs with few filters cut; "
                "on ImageNet that kept far more accuracy than filters alone (README, 'Fewer pixels, fewer filters, "
                "or both'): add --resolution auto if the app can feed smaller images[/yellow]"
            )
        splits, evals = api.open_shrink_data(loaded.spec, data, eval_data, distill=config.distill, seed=config.seed)
        note_few_photos(splits, progress)
        result = api.shrink(loaded, config, splits, evals, progress, checkpoint)
    except UserError:
        checkpoint.discard()
        raise
    if cut is not None:
        cut.annotate(result.report)
    result.report.command = "mobileprune " + shlex.join(sys.argv[1:])
    if not distributed.is_main():  # every process has the same model; one writes it
        return
    api.save_output(result, out, force=replaces(out, force))
    print_report(result.report, console)
    console.print(f"wrote {out}/ (model.pt2, model.safetensors, plan.json, report.json)", highlight=False)
    if export_formats:
        convert_and_report(api.load_model(str(out)), export_formats, out / "bundle", console, check=True)


def note_few_photos(splits: DataSplits | None, progress: Progress) -> None:
    """Say so when a shrink will prune and fit on fewer unlabeled photos than the photo-count curve likes."""
    if splits is not None and not splits.train.labeled and len(splits.train) < FEW_PHOTOS:
        progress.log(
            f"[yellow]note: {len(splits.train)} unlabeled training photos; below a few hundred, one-shot "
            "accuracy at deep cuts fell with every halving in our measurements (README, 'How many photos?')[/yellow]"
        )


def default_out(model: str, suffix: str = ".shrunk") -> Path:
    """`mobilenet.pt` → `mobilenet.shrunk/`, `timm:lcnet_100` → `lcnet_100.shrunk/`: one folder per input."""
    name = Path(model.rstrip("/")).name
    stem = name.split(":", 1)[-1]
    if Path(model).is_file():
        stem = Path(model).stem
    return Path(f"{stem}{suffix}")
