"""`mobileprune plot-filters`: every conv layer's filter L1 norms, so dead filters can be seen."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .. import api
from ..reporting.plots import filter_norms, plot_filter_norms
from .app import app


@app.command("plot-filters")
def plot_filters(
    model: Annotated[str, typer.Argument(help="Checkpoint, zoo name or shrink output.")],
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("filters.png"),
    arch: Annotated[str | None, typer.Option(help="Architecture of a state-dict checkpoint.")] = None,
    num_classes: Annotated[int | None, typer.Option(help="Classes of a checkpoint's classifier.")] = None,
) -> None:
    """Draw each conv layer's filter L1 norms: dead or near-dead filters show up at the bottom."""
    loaded = api.load_model(model, arch, num_classes=num_classes)
    norms = filter_norms(loaded.model)
    path = plot_filter_norms(norms, out, title=f"{loaded.spec.arch}: filter L1 norms per conv layer")
    dead = sum(int((n <= 1e-8).sum()) for n in norms.values())
    console = Console()
    console.print(f"{len(norms)} conv layers, {sum(len(n) for n in norms.values())} filters, {dead} all-zero")
    console.print(f"wrote {path}", highlight=False)
