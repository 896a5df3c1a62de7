"""`mobileprune profile`: per-layer latency on a runtime (the `--by latency` tables) as a table and a PNG."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .. import api
from ..atomic import write_json
from ..bench.latency_profile import plot_profile, profile_latency
from ..errors import UserError
from ..progress import Progress
from .app import app
from .options import with_options


@app.command()
@with_options(("model",))
def profile(
    model: Annotated[str, typer.Argument(help="Checkpoint, zoo name or shrink output.")],
    load_args: dict,
    runtime: Annotated[str, typer.Option(help="Runtime to measure on.")] = "litert",
    threads: Annotated[int, typer.Option(help="Threads of that runtime.")] = 1,
    precision: Annotated[str, typer.Option(help="fp32, fp16 or int8 file.")] = "fp32",
    cache_dir: Annotated[str, typer.Option(help="Latency table folder [~/.cache/mobileprune/latency].")] = "",
    variants: Annotated[int, typer.Option(help="Random pruned variants to time against the prediction.")] = 5,
    round_to: Annotated[int, typer.Option(help="The variants' channels are removed in multiples of this.")] = 8,
    plot: Annotated[Path | None, typer.Option(help="Write the picture here (PNG).")] = None,
    as_json: Annotated[Path | None, typer.Option("--json", help="Write the numbers here.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars or log lines.")] = False,
) -> None:
    """Where the time goes, layer by layer, on the runtime an app uses; and the latency model's error."""
    from ..prune.cost.latency import LatencyCost

    options = {"runtime": runtime, "threads": threads, "precision": precision, "cache_dir": cache_dir}
    if round_to < 1:
        raise UserError(f"--round-to must be a whole number of at least 1, not {round_to}")
    LatencyCost.check(options)
    console = Console(quiet=quiet)
    loaded = api.load_model(model, **load_args)
    result = profile_latency(loaded, options, variants, progress=Progress(console, bars=not quiet), round_to=round_to)
    table = Table(title=f"{result.model} on {runtime} {precision}, {threads} thread(s): {result.unpruned_ms:.3f} ms")
    for column in ("layer", "shape", "ms (alone)", "% time", "% MACs"):
        table.add_column(column, justify="left" if column in ("layer", "shape") else "right")
    total_ms = sum(layer.ms for layer in result.layers) or 1.0
    total_macs = sum(layer.macs for layer in result.layers) or 1
    for layer in result.layers:
        table.add_row(
            layer.layer, layer.shape, f"{layer.ms:.4f}", f"{100 * layer.ms / total_ms:.1f}",
            f"{100 * layer.macs / total_macs:.1f}",
        )  # fmt: skip
    Console().print(table)
    print(
        f"whole model ≈ {result.offset_ms:.3f} ms + {result.scale:.2f} × the layers' sum (fitted on the unpruned and "
        f"a half-width model); noise (model vs itself) {result.noise:.1%}"
    )
    data = result.to_json()
    if result.variants:
        print(
            f"{len(result.variants)} random pruned variants: median error {data['median_error']:.1%}, "
            f"worst {data['worst_error']:.1%} (predicted vs measured share of the unpruned latency; channels "
            f"removed in multiples of {round_to})"
        )
    if plot:
        print(f"wrote {plot_profile(result, plot)}")
    if as_json:
        write_json(as_json, data)
        print(f"wrote {as_json}")
