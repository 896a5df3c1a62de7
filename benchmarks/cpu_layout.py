"""Channels-last weights on the CPU: how much faster are the forward and training passes shrink runs?

The shared ImageNet MobileNetV2 at 224 px, batches of 32 random images, on this machine's CPU threads:
a forward pass (what evaluation, sensitivity probes and reconstruction run) and a distillation training
step (student forward and backward, teacher forward, AdamW step; what recovery runs), each in the standard
layout and inside `mobileprune.channels_last`, interleaved `--repeats` times; the ratio of medians is the
speed-up, and the noise is the standard layout against itself (two interleaved copies of the same loop).

Writes benchmarks/results/cpu_layout.json. Run: `python benchmarks/cpu_layout.py` (a few minutes, idle machine).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from protocol import WEIGHTS

from mobileprune import load_model
from mobileprune.atomic import write_json
from mobileprune.channels_last import channels_last
from mobileprune.reporting.provenance import machine_facts, versions
from mobileprune.train.distill import distillation_loss

HERE = Path(__file__).resolve().parent


def forward(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    @torch.no_grad()
    def run() -> None:
        model(x)

    return run


def distillation_step(student: torch.nn.Module, teacher: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """Batch norm stays in eval mode, as the trainer freezes it; the step's cost, not its effect, is measured."""
    opt = torch.optim.AdamW(student.parameters(), lr=1e-9)

    def run() -> None:
        with torch.no_grad():
            target = teacher(x)
        loss = distillation_loss(student(x), target, 2.0, "kl")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return run


def timed(run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


Make = Callable[[torch.nn.Module, torch.nn.Module, torch.Tensor], Callable[[], None]]


def compare(name: str, make: Make, repeats: int) -> dict:
    """Seconds per call of `make(student, teacher, batch)()`: standard layout (twice, for the noise) and channels-last,
    each on its own copy of the model, interleaved."""
    base = load_model(str(WEIGHTS), arch="mobilenet_v2").model.eval()
    x = torch.randn(32, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    copies = {
        key: (copy.deepcopy(base), copy.deepcopy(base)) for key in ("standard", "standard again", "channels-last")
    }
    with contextlib.ExitStack() as stack:
        stack.enter_context(channels_last(x, *copies["channels-last"]))
        runs = {key: make(student, teacher, x) for key, (student, teacher) in copies.items()}
        for run in runs.values():  # warm-up: oneDNN picks its kernels on the first call
            run()
        seconds: dict[str, list[float]] = {key: [] for key in runs}
        for _ in range(repeats):
            for key, run in runs.items():
                seconds[key].append(timed(run))
    median = {key: statistics.median(values) for key, values in seconds.items()}
    row = {
        "median_s": {key: round(value, 4) for key, value in median.items()},
        "speedup": round(median["standard"] / median["channels-last"], 3),
        "noise": round(abs(median["standard again"] / median["standard"] - 1), 4),
        "repeats": repeats,
    }
    print(name, row, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "cpu_layout.json")
    args = ap.parse_args()
    rows = {
        "forward, batch 32": compare("forward", lambda student, teacher, x: forward(student, x), args.repeats),
        "distillation step, batch 32": compare("distillation step", distillation_step, args.repeats),
    }
    write_json(
        args.out,
        {
            "what": __doc__.splitlines()[0],
            "threads": torch.get_num_threads(),
            "rows": rows,
            "versions": versions(),
            "machine": machine_facts(),
        },
    )


if __name__ == "__main__":
    main()
