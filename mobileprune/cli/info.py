"""`mobileprune info`: what a shrink run did, from its report.json."""

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..artifacts.shrink_folder import verify_output
from ..reporting.console import print_report
from .app import app


@app.command()
def info(
    folder: Annotated[Path, typer.Argument(help="A shrink output folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json.")] = False,
) -> None:
    """Show what a shrink run did."""
    report = verify_output(folder)
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print_report(report, Console())
