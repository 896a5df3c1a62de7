"""`mobileprune sweep`: every (method, target) shrunk with the same settings, then compared on one plot."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .. import api
from ..errors import UserError
from ..progress import Progress
from ..prune.config import ShrinkConfig
from ..reporting.console import print_sweep
from ..sweep import check_method
from .app import app
from .options import target as parse_target
from .options import with_options
from .shrink import note_few_photos


@app.command()
@with_options(
    ("model", "shrink"),
    exclude=("criterion", "criterion_option"),
    criterion=None,  # set per point; criterion options go to the criteria that declare them
    schedule="oneshot",
    steps_per_layer=20,
)
def sweep(
    model: Annotated[str, typer.Argument(help="Checkpoint or zoo name, as for shrink.")],
    config: ShrinkConfig,
    load_args: dict,
    targets: Annotated[str, typer.Option(help="Targets to keep, e.g. 0.9,0.8,0.7.")] = "0.84,0.7,0.5",
    criteria: Annotated[
        str,
        typer.Option(
            "--criteria",
            "--methods",
            help="Methods to compare: criteria (l1,bn,taylor,random), greedy, or sparse methods "
            "(magnitude,gradual,lottery,obs,hybrid: sparsity 1 - target).",
        ),
    ] = "l1,taylor,random",
    out: Annotated[Path, typer.Option(help="Sweep folder (re-run the same command to resume).")] = Path("sweep"),
    data: Annotated[Path | None, typer.Option(help="ImageFolder root for retraining (and val/ accuracy).")] = None,
    eval_data: Annotated[Path | None, typer.Option(help="Labelled ImageFolder to measure accuracy on.")] = None,
    quiet: Annotated[bool, typer.Option(help="No log lines.")] = False,
) -> None:
    """Shrink to every target with every criterion (same retraining budget), then plot accuracy vs size."""
    console = Console(quiet=quiet)
    target_list = [parse_target(t) for t in targets.split(",") if t.strip()]
    names = [c.strip() for c in criteria.split(",") if c.strip()]
    if not target_list or not names:
        raise UserError("--targets and --criteria each need at least one value")
    config.target = target_list[0]
    for name in names:
        check_method(config, name, config.target)  # an unknown method is refused before any work
    spec = api.load_model(model, **load_args).spec
    splits, evals = api.open_shrink_data(spec, data, eval_data, distill=config.distill, seed=config.seed)
    progress = Progress(console)
    note_few_photos(splits, progress)

    def original() -> api.LoadedModel:  # every point starts from it
        return api.load_model(model, **load_args)

    points = api.sweep(original, target_list, names, config, out, splits, evals, progress)
    print_sweep(points, console)
    console.print(f"wrote {out}/ (sweep.csv, sweep.json, pareto.png, points/)", highlight=False)
