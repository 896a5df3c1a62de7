"""`--resume` and `--checkpoint-every`, shared by the commands whose runs save as they go (shrink, sparsify)."""

from pathlib import Path
from typing import Annotated

import typer

from .. import api
from ..errors import UserError
from ..prune.checkpoint import RunCheckpoint, is_checkpoint_only

Force = Annotated[bool, typer.Option(help="Replace a non-empty --out (or start over from its checkpoint).")]
Resume = Annotated[bool, typer.Option(help="Go on from the checkpoint a killed run left in --out.")]
CheckpointEvery = Annotated[int, typer.Option(help="Save a checkpoint every N training steps (and after every phase).")]


def open_checkpoint(out: Path, every: int, resume: bool, force: bool) -> RunCheckpoint:
    """The run's checkpoint in `out`, after checking (before any work) that `out` may be written."""
    if every < 1:
        raise UserError(f"--checkpoint-every must be at least 1, not {every}")
    checkpoint = RunCheckpoint.open(out, every, resume, force)
    api.check_output_dir(out, replaces(out, force))  # a resumed run's folder holds its checkpoint
    return checkpoint


def replaces(out: Path, force: bool) -> bool:
    """Whether writing the result may replace what `out` holds (asked to, or only a checkpoint is there)."""
    return force or is_checkpoint_only(out)
