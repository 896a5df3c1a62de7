"""`mobileprune report`: one shrink run as one self-contained HTML page."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..artifacts.shrink_folder import verify_output
from ..errors import UserError
from ..reporting.html_report import write_report
from .app import app


@app.command()
def report(
    folder: Annotated[Path, typer.Argument(help="A shrink output folder.")],
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path("report.html"),
    compare: Annotated[
        Path | None, typer.Option(help="A `compare` output folder to include (per-class damage, exemplars).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
) -> None:
    """Everything known about a shrink run, as one HTML file (no network, pictures inline)."""
    shrink_report = verify_output(folder)
    if compare is not None and not (compare / "compare.json").is_file():
        raise UserError(f"--compare '{compare}' has no compare.json (give a `mobileprune compare` output folder)")
    if out.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--out '{out}' should end in .html")
    if out.exists() and not force:
        raise UserError(f"--out '{out}' exists; pass --force to replace it")
    write_report(shrink_report, out, compare)
    Console().print(f"wrote {out}", highlight=False)
