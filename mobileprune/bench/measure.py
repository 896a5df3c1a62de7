"""Timing on this machine, done like a careful benchmark rather than a timed loop.

Every model that has the same file (say `model.tflite`) is opened with the same runtime and thread count
and the runs are interleaved, A B A B ... (the order rotating every round), so drift in clock speed,
thermal state or background load hits all of them alike. Each model is warmed up first, and timing goes
on until both `runs` and `min_seconds` are met. The first model is the baseline: speed-up is
median(baseline) / median(model), set beside the MAC and parameter ratios that promised it.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..export.tflite_sparse import has_sparse_tensors
from ..progress import SILENT, Progress
from ..reporting.provenance import machine_facts
from .models import BenchModel
from .runtimes import RUNTIMES, CannotRun, Session, runtime_for
from .stats import LatencyStats


@dataclass
class BenchConfig:
    runtimes: list[str] | None = None  # None: every runtime that has files
    threads: list[int] = field(default_factory=lambda: [1])
    runs: int = 100
    min_seconds: float = 2.0
    warmup: int = 10
    compute_units: str = "all"  # Core ML: cpu or all


@dataclass
class Measurement:
    model: str
    file: str
    runtime: str
    version: str
    threads: int
    stats: LatencyStats
    init_ms: float | None  # load + prepare
    first_ms: float | None  # the first inference, outside the statistics
    memory_mb: float | None  # resident memory added by loading the model and running it once
    input: str  # shape and dtype actually fed
    where: str = "this machine"

    def to_json(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "stats"}
        return {**out, **self.stats.to_json()}


@dataclass
class SpeedUp:
    runtime: str
    file: str
    threads: int
    baseline: str
    model: str
    speedup: float  # median(baseline) / median(model)
    mac_ratio: float | None  # model / baseline
    param_ratio: float | None


@dataclass
class BenchResult:
    measurements: list[Measurement]
    speedups: list[SpeedUp]
    skipped: list[str]
    machine: dict
    notes: list[str] = field(default_factory=list)  # what a reader must know to read the numbers

    def to_json(self) -> dict:
        return {
            "machine": self.machine,
            "measurements": [m.to_json() for m in self.measurements],
            "speedups": [s.__dict__ for s in self.speedups],
            "skipped": self.skipped,
            "notes": self.notes,
        }


def bench(models: list[BenchModel], config: BenchConfig, progress: Progress = SILENT) -> BenchResult:
    """Time every model file on its runtime at each thread count, models with the same file interleaved."""
    skipped: list[str] = []
    groups: dict[tuple[str, str], list[tuple[BenchModel, object]]] = {}
    for model in models:
        for path in model.files:
            runtime = runtime_for(path)
            if config.runtimes and runtime.name not in config.runtimes:
                continue
            missing = runtime.missing()
            if missing:
                skipped.append(f"{model.label}/{path.name}: {runtime.name} is not installed: {missing}")
                continue
            groups.setdefault((runtime.name, path.name), []).append((model, path))
    measurements: list[Measurement] = []
    for threads in config.threads:
        for (runtime_name, file_name), members in groups.items():
            progress.log(f"timing {file_name} on {runtime_name}, {threads} thread(s): {len(members)} model(s)")
            try:
                measurements += _interleaved(runtime_name, members, threads, config, progress)
            except CannotRun as exc:
                skipped.append(f"{file_name} on {runtime_name} at {threads} thread(s): {exc}")
    return BenchResult(measurements, speedups(measurements, models), skipped, machine_facts(), _sparse_notes(groups))


def _sparse_notes(groups: dict) -> list[str]:
    """Sparse .tflite files timed on x86: XNNPACK has no sparse kernels there, so they ran dense."""
    if platform.machine().lower() in ("arm64", "aarch64") or platform.machine().lower().startswith("arm"):
        return []
    files = {path for members in groups.values() for _, path in members if path.suffix == ".tflite"}
    sparse = sorted(str(p) for p in files if has_sparse_tensors(p))
    if not sparse:
        return []
    return [
        f"{', '.join(sparse)}: sparse weights, timed dense here: XNNPACK's sparse kernels are ARM and "
        "WebAssembly code (time them on a phone: bench --device adb)"
    ]


def _interleaved(runtime_name, members, threads: int, config: BenchConfig, progress: Progress) -> list[Measurement]:
    with threads_restored():
        return _timed(RUNTIMES.create(runtime_name), members, threads, config, progress)


def _timed(runtime, members, threads: int, config: BenchConfig, progress: Progress) -> list[Measurement]:
    opened = []
    for model, path in members:
        rss = _resident_mb()
        started = time.perf_counter()
        session = runtime.open(path, threads, config.compute_units)
        init_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        session.run()
        first_ms = (time.perf_counter() - started) * 1000
        memory = None if rss is None else round(_resident_mb() - rss, 2)
        opened.append((model, path, session, init_ms, first_ms, memory))
    with progress.task(f"{members[0][1].name} {runtime.name} x{threads}", total=config.runs) as task:
        samples = time_interleaved([o[2] for o in opened], config.runs, config.min_seconds, config.warmup, task.advance)
    return [
        Measurement(
            model.label,
            path.name,
            runtime.name,
            runtime.version(),
            threads,
            LatencyStats.from_samples(times),
            round(init_ms, 2),
            round(first_ms, 3),
            memory,
            f"{'x'.join(map(str, session.input_shape))} {session.input_dtype}",
        )
        for (model, path, session, init_ms, first_ms, memory), times in zip(opened, samples, strict=True)
    ]


@contextmanager
def threads_restored() -> Iterator[None]:
    """The torch runtime sets the process's thread count on every run (torch has no per-model setting): the
    caller's count comes back after timing, so training that follows keeps its numerics."""
    import torch

    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def time_interleaved(
    sessions: list[Session], runs: int, min_seconds: float, warmup: int, tick: Callable[[], None] | None = None
) -> list[list[float]]:
    """Milliseconds of every run of each session, A B A B ... with the order rotating every round."""
    for session in sessions:
        for _ in range(warmup):
            session.run()
    samples: list[list[float]] = [[] for _ in sessions]
    started = time.perf_counter()
    rounds = 0
    while rounds < runs or time.perf_counter() - started < min_seconds:
        order = list(range(len(sessions)))
        shift = rounds % len(order)
        for i in order[shift:] + order[:shift]:  # rotate: no model always runs right after another
            t0 = time.perf_counter_ns()
            sessions[i].run()
            samples[i].append((time.perf_counter_ns() - t0) / 1e6)
        rounds += 1
        if tick:
            tick()
    return samples


def speedups(measurements: list[Measurement], models: list[BenchModel]) -> list[SpeedUp]:
    """Each model against the first (the baseline) wherever both ran the same file, runtime and threads."""
    if len(models) < 2:
        return []
    baseline = models[0]
    cost = {m.label: m for m in models}
    base = {(m.runtime, m.file, m.threads): m for m in measurements if m.model == baseline.label}
    out = []
    for m in measurements:
        ref = base.get((m.runtime, m.file, m.threads))
        if m.model == baseline.label or ref is None:
            continue
        other = cost[m.model]
        out.append(
            SpeedUp(
                m.runtime,
                m.file,
                m.threads,
                baseline.label,
                m.model,
                round(ref.stats.median_ms / m.stats.median_ms, 4),
                _ratio(other.macs, baseline.macs),
                _ratio(other.params, baseline.params),
            )
        )
    return out


def _ratio(a: int | None, b: int | None) -> float | None:
    return round(a / b, 4) if a and b else None


def _resident_mb() -> float | None:
    """This process's resident memory (Linux /proc); None where that is not available."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None
