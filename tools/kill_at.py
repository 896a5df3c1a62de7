"""Run the mobileprune CLI and SIGKILL it at a chosen point (tests/test_resume.py, benchmarks/resume_mobilenet_v2.py).

    python kill_at.py POINT N shrink|sparsify ARGS...

POINT: `sensitivity` kills right after the N-th checkpoint saved inside a sensitivity measurement;
`layerwise` / `finetune` kill after the N-th training step of the layerwise schedule / the final
fine-tune, wherever that falls between checkpoints; `gradual` / `lottery` after the N-th training step
of those sparsify methods. Before dying it prints `killed at step S` (the trainer's steps done) so the
test can tell how much work the resumed run has to redo.
"""

import os
import signal
import sys

from mobileprune.cli import main
from mobileprune.prune.checkpoint import RunCheckpoint

point, n = sys.argv[1], int(sys.argv[2])
sys.argv = ["mobileprune", *sys.argv[3:]]
count = 0
save, step = RunCheckpoint.save, RunCheckpoint.step


def die(run) -> None:
    done = run.trainer.steps_done if run.trainer is not None else 0
    print(f"killed at step {done}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def saving(self, run):
    global count
    save(self, run)
    if point == "sensitivity" and self._partial and self._partial[0].startswith("allocate/"):
        count += 1
        if count == n:
            die(run)


def stepping(self, run):
    global count
    pruned = any(key.startswith("prune/") for key in self.done)
    inside = self._partial[0] if self._partial else None  # the final fine-tune saves its starting point
    if inside == "fine_tune" or (inside is None and pruned):
        phase = "finetune"
    else:
        phase = "layerwise" if inside and inside.startswith("prune/") else (inside or "").split("/")[0]
    if point == phase:
        count += 1
        if count == n:
            die(run)
    step(self, run)


RunCheckpoint.save, RunCheckpoint.step = saving, stepping
main()
