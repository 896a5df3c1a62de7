"""Checkpoints of a shrink (or sparsify) run: what a killed run leaves in its output folder, and how
`--resume` goes on.

A run is a fixed sequence of phases (pipeline.py). After each phase that costs time, and inside the long
ones (after every group of the sensitivity measurement, every layer of the layerwise schedule, every
`--checkpoint-every` fine-tuning steps), the state goes to OUT/checkpoint/state.pt, written to a temporary
file and renamed: the completed phases with their small results, the channel plan, the model's weights,
the trainer (steps, data position, optimiser inside a call) and the RNG states.

A resumed run walks the same sequence. Completed phases are *restored* instead of computed (their results
read back, their pruning steps replayed through the graph); at the first incomplete phase the run
*arrives*: weights, trainer and RNG are loaded, so everything after is what the uninterrupted run did.
Written with torch.save of tensors and plain containers and read with `weights_only=True`: no code in it
is ever run. Settings that change the result must match the checkpoint's; `NEUTRAL` ones may change.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import UserError
from ..train import distributed
from ..train.class_counts import ClassCounts
from ..train.loop import Accuracy
from .allocate import Allocation
from .plan import ChannelPlan

if TYPE_CHECKING:
    from ..sparsify.run import SparsifyRun
    from .pipeline import ShrinkRun

    Run = ShrinkRun | SparsifyRun  # what a checkpoint saves: plan, model, trainer, timings (and logs to progress)

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.pt"
FORMAT = 1
NEUTRAL = {"workers", "checkpoint_every"}  # settings a resume may change: they do not change the result


def is_checkpoint_only(out: Path) -> bool:
    """`out` holds nothing but an interrupted run's checkpoint (the final write may replace it)."""
    return Path(out).is_dir() and {p.name for p in Path(out).iterdir()} == {CHECKPOINT_DIR}


class RunCheckpoint:
    """Saves a run's state as it goes and, when resuming, hands the saved state back phase by phase.

    `folder=None` checkpoints nothing (the Python API's default): phases still run through it unchanged.
    """

    def __init__(self, folder: Path | None = None, every: int = 100, saved: dict | None = None):
        self.folder = Path(folder) if folder is not None else None
        self.every = max(1, every)
        self.saved = saved  # the checkpoint this run resumes from
        self.arrived = saved is None  # False while restoring completed phases
        self.resumed_at: str | None = None
        self.done: dict[str, Any] = {}
        self.settings: dict[str, Any] = {}
        self._partial: tuple[str, Any] | None = None
        self.made_out = self.folder is not None and not self.folder.parent.exists()  # --out is this run's
        self._since_save = 0

    @classmethod
    def open(cls, out: Path, every: int, resume: bool, force: bool) -> RunCheckpoint:
        """The checkpoint for `--out OUT`, checked before any work: refuses to resume nothing or to overwrite."""
        path = Path(out) / CHECKPOINT_DIR / STATE_FILE
        if not resume:
            if path.is_file() and not force:
                raise UserError(
                    f"'{out}' holds the checkpoint of an interrupted run: add --resume to go on from it, "
                    "or --force to start over"
                )
            return cls(Path(out) / CHECKPOINT_DIR, every)
        if not path.is_file():
            raise UserError(f"--resume: '{out}' holds no checkpoint to go on from (run without --resume)")
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(saved, dict) or saved.get("format") != FORMAT:
                raise ValueError("not a mobileprune checkpoint of this format")
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same answer to the user
            raise UserError(
                f"--resume: the checkpoint '{path}' cannot be read ({str(exc).splitlines()[0][:120]}); "
                "run again with --force to start over"
            ) from None
        return cls(Path(out) / CHECKPOINT_DIR, every, saved)

    # -- what a phase asks ----------------------------------------------------------------------------

    def begin(self, settings: dict[str, Any], defaults: dict[str, Any] | None = None) -> None:
        """Record the run's settings; a resumed run must have the checkpoint's (neutral ones aside).

        A setting the checkpoint does not name came with a later version of mobileprune; the run that
        wrote it behaved as that setting's default does, so `defaults` (laid out like `settings`) lets a
        run that keeps the default go on. A setting the checkpoint names and this version lacks is refused:
        what it did is not known here.
        """
        self.settings = settings
        if self.saved is None:
            return
        old = _flat(self.saved["settings"])
        new = _flat(settings)
        known = _flat(defaults or {})
        for key in [*new, *(k for k in old if k not in new)]:  # settings' order: the first differing is named
            if key not in old and key in known and new.get(key) == known[key]:
                continue
            if key.split(".")[-1] not in NEUTRAL and old.get(key) != new.get(key):
                name = key.split(".")[-1].replace("_", "-")
                made = (
                    f"by a version without {name} (as if {known[key]!r})"
                    if key not in old and key in known
                    else f"with {name} = {old.get(key)!r}"
                )
                raise UserError(
                    f"--resume: the checkpoint was made {made}, this run has "
                    f"{new.get(key)!r}; resume with the same settings, or --force to start over"
                )

    def restored(self, run: Run, key: str) -> Any | None:
        """Phase `key`'s saved result while restoring; None when it must run (arriving first if resuming)."""
        if not self.arrived:
            if key in self.saved["done"]:
                self.done[key] = self.saved["done"][key]
                return self.done[key]
            self._arrive(run, key)
        return None

    def partial(self, key: str) -> Any | None:
        """What phase `key` saved of itself before the run was killed inside it."""
        if self.saved is None or self.resumed_at != key:
            return None
        return self.saved["partial"].get(key)

    def complete(self, run: Run, key: str, result: Any) -> None:
        self.done[key] = result
        self._partial = None
        self.save(run)

    def save_partial(self, run: Run, key: str, value: Any) -> None:
        self.hold_partial(key, value)
        self.save(run)

    def hold_partial(self, key: str, value: Any) -> None:
        """Phase `key`'s state as of now, written with the next save (which also writes the weights and
        trainer of the same moment, so a resumed run never pairs it with other steps)."""
        self._partial = (key, value)

    def step(self, run: Run) -> None:
        """After each training step: a save every `every` steps (with the phase's partial state)."""
        self._since_save += 1
        if self._since_save >= self.every:
            self.save(run)

    def replay_steps(self, run: Run, upto: int | None = None) -> None:
        """The saved plan's steps after those `run` has, up to step `upto`, pruned again through `run.graph`."""
        for step in ChannelPlan.from_json(self.saved["plan"]).steps[len(run.plan.steps) : upto]:
            run.graph.prune(step.group, list(step.removed))
            run.plan.add(step.group, list(step.removed))

    def discard(self) -> None:
        """Remove this run's own checkpoint (a fresh run that failed on bad input: resuming cannot help)."""
        if self.folder is None or self.saved is not None or not distributed.is_main():
            return
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.made_out and self.folder.parent.is_dir() and not any(self.folder.parent.iterdir()):
            self.folder.parent.rmdir()

    # -- the file --------------------------------------------------------------------------------------

    def save(self, run: Run) -> None:
        self._since_save = 0
        if self.folder is None or not distributed.is_main():
            return
        state = {
            "format": FORMAT,
            "settings": self.settings,
            "done": self.done,
            "partial": dict([self._partial]) if self._partial else {},
            "plan": run.plan.to_json(),
            "weights": cpu_weights(run.model),
            "trainer": run.trainer.state_dict() if run.trainer is not None else None,
            "timings": dict(run.timings),
            "rng": _rng_state(),
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / STATE_FILE
        tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    def _arrive(self, run: Run, key: str) -> None:
        """At the first incomplete phase: the rest of the saved plan, the weights, the trainer and the RNG."""
        saved = self.saved
        self.replay_steps(run)  # pruned inside the interrupted phase (layerwise)
        run.model.load_state_dict(saved["weights"])
        if run.trainer is not None and saved["trainer"] is not None:
            run.trainer.load_state_dict(saved["trainer"])
        run.timings.update(saved["timings"])
        _set_rng_state(saved["rng"])
        self.arrived, self.resumed_at = True, key
        if key in saved["partial"]:
            self._partial = (key, saved["partial"][key])
        run.progress.log(f"resuming at {key} ({len(self.done)} phases restored from the checkpoint)")


# -- results of phases as checkpoint values (tensors and plain containers only) -----------------------


def cpu_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def accuracy_state(acc: Accuracy | None) -> dict | None:
    if acc is None:
        return None
    counts = [a.tolist() for a in acc.per_class.arrays()] if acc.per_class is not None else None
    return {"top1": acc.top1, "top5": acc.top5, "images": acc.images, "per_class": counts}


def accuracy_from(state: dict | None) -> Accuracy | None:
    if state is None:
        return None
    counts = state["per_class"]
    per_class = ClassCounts(*(np.array(a, dtype=np.int64) for a in counts)) if counts is not None else None
    return Accuracy(state["top1"], state["top5"], state["images"], per_class)


def allocation_state(allocation: Allocation) -> dict:
    return {
        "removed": dict(allocation.removed),
        "predicted": allocation.predicted,
        "ratio": allocation.ratio,
        "strategy": allocation.strategy,
    }


def allocation_from(state: dict) -> Allocation:
    return Allocation(dict(state["removed"]), state["predicted"], state["ratio"], state["strategy"])


def _flat(settings: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif key == "device" and isinstance(value, str):  # cuda:1 on rank 1 is the same setting as cuda:0
            out[f"{prefix}{key}"] = value.split(":")[0]
        else:
            out[f"{prefix}{key}"] = value
    return out


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
