"""`mobileprune plugins`: every criterion, allocation, schedule, cost, sparsify method, format and runtime."""

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..bench.runtimes import RUNTIMES
from ..errors import UserError
from ..export import FORMATS
from ..prune.allocate import ALLOCATIONS
from ..prune.cost import COST_MODELS
from ..prune.criteria import CRITERIA
from ..prune.schedules import SCHEDULES
from ..sparsify.methods import METHODS
from .app import app

KINDS = {
    "criterion": (CRITERIA, "--criterion"),
    "allocation": (ALLOCATIONS, "--allocation"),
    "schedule": (SCHEDULES, "--schedule"),
    "by": (COST_MODELS, "--by"),
    "method": (METHODS, "sparsify --method"),
    "format": (FORMATS, "convert --to"),
    "runtime": (RUNTIMES, "bench --runtime"),
}


@app.command()
def plugins(
    kind: Annotated[str | None, typer.Argument(help=f"Only this kind: {', '.join(KINDS)}.")] = None,
) -> None:
    """List the plug-ins of each kind with their options (set them with --criterion-option KEY=VALUE, ...)."""
    if kind is not None and kind not in KINDS:
        raise UserError(f"unknown plug-in kind '{kind}': choose one of {', '.join(KINDS)}")
    table = Table(title="plug-ins", title_justify="left")
    for col in ("option", "name", "what it does", "options (KEY=default: help)"):
        table.add_column(col)
    for name, (registry, flag) in KINDS.items():
        if kind not in (None, name):
            continue
        for plugin in registry.names():
            options = registry.options(plugin).values()
            described = "; ".join(f"{o.name}={o.default}: {o.help}" for o in options) or "-"
            table.add_row(flag, plugin, registry.describe(plugin), described)
    Console().print(table)
