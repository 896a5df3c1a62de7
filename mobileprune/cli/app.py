"""The `mobileprune` command's root: the typer app, `--debug`, and how errors reach the user.

User errors print one line and exit 2; `--debug` shows the traceback instead. Each command lives in its
own module of this package and calls only the Python API (`mobileprune.api`).
"""

import sys
from typing import Annotated

import typer
from rich.console import Console

from ..errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Structured pruning for mobile CNNs.",
)
err = Console(stderr=True)


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    """Structured pruning for mobile CNNs."""


def main() -> None:
    """Console entry point: user errors are one line and exit code 2."""
    debug = "--debug" in sys.argv
    try:
        code = app(standalone_mode=False)  # returns typer.Exit's code instead of exiting
        if isinstance(code, int) and code:
            sys.exit(code)
    except UserError as exc:
        if debug:
            raise
        err.print(f"error: {exc}", highlight=False, soft_wrap=True, markup=False)
        sys.exit(2)
    except Exception as exc:
        if type(exc).__name__ == "Abort":
            err.print("aborted")
            sys.exit(130)
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click's (or typer's) usage errors
            if debug:
                raise
            err.print(f"error: {exc.format_message()}", highlight=False, soft_wrap=True, markup=False)
            sys.exit(2)
        if debug:
            raise
        err.print(
            f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
        sys.exit(1)
