"""An Android phone over adb: push the .tflite, run TFLite's `benchmark_model` on it, parse what it prints.

`benchmark_model` is the tool the TFLite team measures with; it runs on the phone's own CPU cores (XNNPACK),
so its numbers are the ones an app sees. Its output changed over the years; `parse_benchmark_output` reads
every form (plain, `INFO:`-prefixed, or logcat's `I tflite  :`):

    count=50 first=... curr=... min=... max=... avg=... std=... [p5=... median=... p95=...]
    Inference timings in us: Init: X, First inference: X, Warmup (avg): X, Inference (avg): X
    Average inference timings in us: Warmup: X, Init: X, Inference: X          (older releases)
    Memory footprint delta from the start of the tool (MB): init=X overall=X
    Peak memory footprint (MB): init=X overall=X
    Overall peak memory footprint (MB) via periodic monitoring: X
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .measure import BenchConfig, BenchResult, Measurement, speedups
from .models import BenchModel
from .stats import LatencyStats

DEVICE_DIR = "/data/local/tmp"
NUMBER = r"([0-9.]+(?:e[+-]?[0-9]+)?)"


@dataclass
class DeviceTimings:
    """benchmark_model's numbers, converted to milliseconds and MB."""

    count: int | None = None
    mean_ms: float | None = None
    median_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    std_ms: float | None = None
    p5_ms: float | None = None
    p95_ms: float | None = None
    init_ms: float | None = None
    first_ms: float | None = None
    warmup_ms: float | None = None
    memory_init_mb: float | None = None
    memory_mb: float | None = None  # overall or peak footprint


def parse_benchmark_output(text: str) -> DeviceTimings:
    """Every number benchmark_model printed; raises UserError when it printed no inference timing at all."""
    t = DeviceTimings()
    counts = [line for line in text.splitlines() if re.search(r"\bcount=\d+", line)]
    if counts:  # the last statistics line is the timed run; earlier ones are warm-up
        fields = dict(re.findall(r"(\w+)=" + NUMBER, counts[-1]))
        t.count = int(float(fields["count"]))
        for key, name in (("avg", "mean"), ("median", "median"), ("min", "min"), ("max", "max"), ("std", "std")):
            if key in fields:
                setattr(t, f"{name}_ms", float(fields[key]) / 1000)
        for key in ("p5", "p95"):
            if key in fields:
                setattr(t, f"{key}_ms", float(fields[key]) / 1000)
    if m := re.search(
        rf"Inference timings in us: Init: {NUMBER}, First inference: {NUMBER}, "
        rf"Warmup \(avg\): {NUMBER}, Inference \(avg\): {NUMBER}",
        text,
    ):
        t.init_ms, t.first_ms, t.warmup_ms = (float(m.group(i)) / 1000 for i in (1, 2, 3))
        t.mean_ms = float(m.group(4)) / 1000
    elif m := re.search(
        rf"Average inference timings in us: Warmup: {NUMBER}, Init: {NUMBER}, Inference: {NUMBER}", text
    ):
        t.warmup_ms, t.init_ms, t.mean_ms = (float(m.group(i)) / 1000 for i in (1, 2, 3))
    if m := re.search(
        rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
        rf"init={NUMBER} overall={NUMBER}",
        text,
    ):
        t.memory_init_mb, t.memory_mb = float(m.group(1)), float(m.group(2))
    if m := re.search(rf"Overall peak memory footprint \(MB\) via periodic monitoring: {NUMBER}", text):
        t.memory_mb = float(m.group(1))
    if t.mean_ms is None:
        tail = " | ".join(text.strip().splitlines()[-3:])[:300]
        raise UserError(f"benchmark_model printed no inference timings; its last lines: {tail}")
    return t


@dataclass
class AdbDevice:
    serial: str | None
    binary: str  # benchmark_model: a local file to push, or a path on the device
    cpu_mask: str | None = None  # taskset mask, e.g. f0 for the big cores of many phones

    @classmethod
    def from_spec(cls, spec: str, binary: str | None, cpu_mask: str | None) -> AdbDevice:
        """`adb` or `adb:SERIAL`, checked: adb on PATH and the device attached."""
        serial = spec.split(":", 1)[1] if ":" in spec else None
        device = cls(serial, binary or f"{DEVICE_DIR}/benchmark_model", cpu_mask)
        if shutil.which("adb") is None:
            raise UserError("adb is not on PATH: install Android platform-tools to bench on a phone")
        attached = [
            line.split()[0]
            for line in device._adb("devices").splitlines()[1:]
            if line.strip() and line.split()[-1] == "device"
        ]
        if not attached:
            raise UserError("no Android device attached (adb devices lists none ready; check USB debugging)")
        if serial and serial not in attached:
            raise UserError(f"device '{serial}' is not attached (adb devices lists: {', '.join(attached)})")
        if not serial and len(attached) > 1:
            raise UserError(f"several devices attached ({', '.join(attached)}): choose one with --device adb:SERIAL")
        return device

    def _adb(self, *args: str) -> str:
        cmd = ["adb", *(["-s", self.serial] if self.serial else []), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise UserError(f"{' '.join(cmd[:4])} ... failed: {(done.stderr or done.stdout).strip()[:300]}")
        return done.stdout

    def prepare(self) -> str:
        """The benchmark binary's path on the device (pushed first when it is a local file)."""
        local = Path(self.binary)
        if local.is_file():
            self._adb("push", str(local), f"{DEVICE_DIR}/benchmark_model")
            self._adb("shell", "chmod", "755", f"{DEVICE_DIR}/benchmark_model")
            return f"{DEVICE_DIR}/benchmark_model"
        return self.binary

    def command(self, binary: str, remote_model: str, threads: int, runs: int, warmup: int, min_seconds: float):
        args = [
            binary,
            f"--graph={remote_model}",
            f"--num_threads={threads}",
            "--use_xnnpack=true",
            f"--num_runs={runs}",
            f"--warmup_runs={warmup}",
            f"--min_secs={min_seconds}",
        ]
        if self.cpu_mask:
            args = ["taskset", self.cpu_mask, *args]
        return " ".join(shlex.quote(a) for a in args)

    def shell(self, *args: str) -> str:
        return self._adb("shell", *args)

    def push(self, path: Path, remote_name: str) -> str:
        remote = f"{DEVICE_DIR}/{remote_name}"
        self._adb("push", str(path), remote)
        return remote

    def time_file(self, binary: str, remote: str, threads: int, runs: int, warmup: int, min_seconds: float):
        """benchmark_model's timings of a model file already on the phone."""
        return parse_benchmark_output(self.shell(self.command(binary, remote, threads, runs, warmup, min_seconds)))

    def bench(self, label: str, path: Path, threads: list[int], runs: int, warmup: int, min_seconds: float):
        binary = self.prepare()
        remote = self.push(path, f"mobileprune-{path.name}")
        where = f"adb:{self.serial or 'default'}" + (f" taskset {self.cpu_mask}" if self.cpu_mask else "")
        out = []
        for n in threads:
            t = self.time_file(binary, remote, n, runs, warmup, min_seconds)
            stats = LatencyStats(
                runs=t.count or runs,
                mean_ms=t.mean_ms,
                median_ms=t.median_ms if t.median_ms is not None else t.mean_ms,  # older tools print no median
                p90_ms=None,
                p99_ms=None,
                min_ms=t.min_ms,
                std_ms=t.std_ms,
            )
            out.append(
                Measurement(
                    label,
                    path.name,
                    "benchmark_model",
                    "device",
                    n,
                    stats,
                    t.init_ms,
                    t.first_ms,
                    t.memory_mb,
                    "file's own",
                    where,
                )
            )
        return out


def bench_on_phone(
    device: str, binary: str | None, cpu_mask: str | None, models: list[BenchModel], config: BenchConfig
) -> BenchResult:
    """`bench --device adb[:SERIAL]`: every .tflite of `models` timed with benchmark_model on the phone."""
    if not device.startswith("adb"):
        raise UserError(f"unknown --device '{device}': use adb or adb:SERIAL")
    phone = AdbDevice.from_spec(device, binary, cpu_mask)
    measurements, skipped = [], []
    for model in models:
        for path in model.files:
            if not path.name.endswith(".tflite"):
                skipped.append(f"{model.label}/{path.name}: the phone runs .tflite files only")
                continue
            measurements += phone.bench(
                model.label, path, config.threads, config.runs, config.warmup, config.min_seconds
            )
    return BenchResult(measurements, speedups(measurements, models), skipped, {"device": device})
