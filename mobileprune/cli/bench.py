"""`mobileprune bench`: FPS and latency on the runtimes phones use, several models interleaved."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .. import api
from ..atomic import write_json
from ..bench.runtimes import RUNTIMES
from ..errors import UserError
from ..progress import Progress
from ..reporting.console import print_bench
from ..reporting.plots import plot_fps
from .app import app
from .options import counts


@app.command()
def bench(
    models: Annotated[
        list[str], typer.Argument(help="Model files or convert/shrink folders; the first is the baseline.")
    ],
    runtime: Annotated[
        str | None, typer.Option(help=f"Only these: {','.join(RUNTIMES.names())} (default: all found).")
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
    console = Console(quiet=quiet)
    thread_counts = counts(threads, "--threads")
    runtimes = [r.strip() for r in runtime.split(",") if r.strip()] if runtime else None
    for name in runtimes or []:
        RUNTIMES.get(name)  # an unknown name is refused before any work
    if runs < 1 or min_seconds < 0 or warmup < 0:
        raise UserError("--runs must be at least 1, --min-seconds and --warmup at least 0")
    if compute_units not in ("cpu", "all"):
        raise UserError(f"--compute-units takes cpu or all, not '{compute_units}'")
    labels: dict[str, int] = {}
    opened = []
    for argument in models:  # the same model twice (a noise check) gets two labels
        labels[argument] = labels.get(argument, 0) + 1
        label = argument.rstrip("/") + (f" #{labels[argument]}" if labels[argument] > 1 else "")
        opened.append(api.open_bench_model(argument, label))
    config = api.BenchConfig(runtimes, thread_counts, runs, min_seconds, warmup, compute_units)
    result = api.bench(
        opened,
        config,
        Progress(console, bars=not quiet),
        device=device,
        benchmark_binary=benchmark_binary,
        cpu_mask=cpu_mask,
    )
    print_bench(result, console)
    if as_json:
        write_json(as_json, result.to_json())
        console.print(f"wrote {as_json}", highlight=False)
    if plot:
        console.print(f"wrote {plot_fps(result, plot)}", highlight=False)
