"""`mobileprune compare`: the unpruned model against pruned ones, class by class, with the images they broke."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .. import api
from ..progress import Progress
from ..reporting.console import print_comparison
from .app import app
from .options import read_labels, with_options


@app.command()
@with_options(("model",))
def compare(
    models: Annotated[
        list[str],
        typer.Argument(
            help="The unpruned model first (folder, checkpoint or zoo name), then pruned ones: shrink folders, "
            "checkpoints or exported files (.tflite, .onnx, .pte)."
        ),
    ],
    load_args: dict,
    eval_data: Annotated[Path, typer.Option(help="Labelled images (class folders), e.g. a held-out split.")],
    out: Annotated[Path, typer.Option(help="Folder for compare.json, pie.csv, pie.png, classes.png.")] = Path(
        "compare"
    ),
    labels: Annotated[Path | None, typer.Option(help="Class names, one per line (default: the model's).")] = None,
    force: Annotated[bool, typer.Option(help="Replace an earlier compare output.")] = False,
    quiet: Annotated[bool, typer.Option(help="No log lines or progress bars.")] = False,
) -> None:
    """Per-class damage, agreement and pruning-identified exemplars (PIE) of pruned models."""
    console = Console(quiet=quiet)
    names = read_labels(labels) if labels else None
    api.check_compare_dir(out, force)
    result = api.compare(models, eval_data, names, load_args, Progress(console, bars=True))
    api.write_comparison(result, out, force)
    print_comparison(result, console)
    console.print(f"wrote {out}/ (compare.json, pie.csv, pie.png, classes.png)", highlight=False)
