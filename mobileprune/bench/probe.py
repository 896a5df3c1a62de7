"""Latency of PyTorch modules on an app runtime: convert each to the runtime's file, then time them interleaved.

`--by latency` needs two kinds of measurement: thousands of tiny single-layer models for its tables, and
a few whole models to calibrate and verify against. Both go through a `LatencyProbe`: `RuntimeProbe`
converts with the format that the runtime opens (LiteRT → `.tflite`, ONNX Runtime → `.onnx`, ...) and
times on this machine; a phone (or a test's fake runtime) is another probe with the same two methods.

Inputs are channels-last (NHWC) for image-shaped models, as apps feed them, so a single conv's file holds
the conv alone and not the layout transposes a whole network pays once.
"""

from __future__ import annotations

import platform
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn as nn

from ..atomic import scratch_folder
from ..errors import UserError
from ..export.base import FORMATS, ExportRequest
from ..models import ModelSpec
from ..quiet import native_output_silenced
from .measure import threads_restored, time_interleaved
from .runtimes import RUNTIMES, CannotRun
from .stats import LatencyStats

if TYPE_CHECKING:
    from .android import AdbDevice


class LatencyProbe(Protocol):
    def key(self) -> dict[str, str]:
        """Everything the measurements depend on besides the model (runtime, version, threads, machine)."""

    def time(self, models: Sequence[nn.Module], example: torch.Tensor, careful: bool = False) -> list[float]:
        """Median milliseconds of each model on an input shaped like `example` (NCHW), measured interleaved.

        `careful`: whole models whose ratio decides something; time them longer than a table's single layers.
        """


class ChannelsLast(nn.Module):
    """NHWC in and out around an NCHW module (2-D outputs pass through)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.module(x.permute(0, 3, 1, 2))
        return y.permute(0, 2, 3, 1) if y.dim() == 4 else y


def check_runtime(runtime: str, threads: int, precision: str):
    """The runtime and the exporter that writes its files, or a one-line UserError saying what is wrong."""
    if runtime not in RUNTIMES:
        raise UserError(f"unknown --runtime '{runtime}': choose one of {', '.join(RUNTIMES.names())}")
    engine = RUNTIMES.create(runtime)
    missing = engine.missing()
    if missing:
        raise UserError(f"--runtime {runtime} is not installed here: {missing}")
    exporter = next(
        (FORMATS.create(n) for n in FORMATS.names() if FORMATS.create(n).file_name.endswith(engine.suffix)), None
    )
    if exporter is None:
        raise UserError(f"--runtime {runtime}: no export format writes the {engine.suffix} files it opens")
    if exporter.missing():
        raise UserError(
            f"--runtime {runtime} needs {exporter.missing()} to write its files "
            f"(pip install mobileprune[{exporter.extra}])"
        )
    if precision not in exporter.precisions:
        raise UserError(f"--precision {precision}: {exporter.name} files come in {', '.join(exporter.precisions)}")
    if threads < 1:
        raise UserError(f"--threads must be at least 1, not {threads}")
    return engine, exporter


class RuntimeProbe:
    """Times modules on one of `mobileprune bench`'s runtimes at a fixed thread count and precision."""

    def __init__(self, runtime: str, threads: int = 1, precision: str = "fp32", runs: int = 30, min_seconds=0.3):
        self.runtime, self.exporter = check_runtime(runtime, threads, precision)
        self.threads, self.precision, self.runs, self.min_seconds = threads, precision, runs, min_seconds
        self._folder = scratch_folder(self, "mobileprune-probe-")  # converted files: gone with the probe
        self._count = 0
        self._written: dict[tuple, tuple[nn.Module, Path]] = {}  # a model timed again is not converted again

    def key(self) -> dict[str, str]:
        return {
            "runtime": self.runtime.name,
            "runtime_version": self.runtime.version(),
            "precision": self.precision,
            "threads": str(self.threads),
            "machine": f"{platform.machine()} {platform.processor() or platform.node()}",
        }

    def time(self, models: Sequence[nn.Module], example: torch.Tensor, careful: bool = False) -> list[float]:
        sessions = []
        for model in models:
            path = self._write(model, example)
            try:
                sessions.append(self.runtime.open(path, self.threads))
            except CannotRun as exc:
                raise UserError(f"--runtime {self.runtime.name} cannot time {path.name}: {exc}") from None
        runs, seconds = (max(self.runs, 100), max(self.min_seconds, 3.0)) if careful else (self.runs, self.min_seconds)
        with threads_restored():
            samples = time_interleaved(sessions, runs, seconds, warmup=3)
        return [LatencyStats.from_samples(s).median_ms for s in samples]

    def _write(self, model: nn.Module, example: torch.Tensor) -> Path:
        key = (id(model), tuple(example.shape), tuple(tuple(p.shape) for p in model.parameters()))
        if key in self._written and self._written[key][0] is model:
            return self._written[key][1]
        path = self._convert(model, example)
        self._written[key] = (model, path)
        return path

    def _convert(self, model: nn.Module, example: torch.Tensor) -> Path:
        self._count += 1
        folder = self._folder / str(self._count)
        folder.mkdir()
        image = example.dim() == 4
        wrapped = ChannelsLast(model.eval()) if image else model.eval()
        sample = example.permute(0, 2, 3, 1).contiguous() if image else example
        size = example.shape[-1] if image else 1
        spec = ModelSpec("probe", "torchvision", "probe", input_size=size, num_classes=1, label_set=None)
        calibration = torch.randn(8, *sample.shape[1:]).numpy() if self.precision == "int8" else None
        request = ExportRequest(wrapped, spec, sample, folder, precision=self.precision, calibration=calibration)
        with native_output_silenced():
            return self.exporter.export(request)


class PhoneProbe(RuntimeProbe):
    """The same `.tflite` files, timed on an Android phone by `benchmark_model` over adb (one after another:
    the tool runs one model per invocation, so measurements are sequential, not interleaved)."""

    def __init__(self, device: str, binary: str | None, cpu_mask: str | None, threads: int = 1, precision="fp32"):
        from .android import AdbDevice

        super().__init__("litert", threads, precision)
        if not device.startswith("adb"):
            raise UserError(f"unknown --device '{device}' for --by latency: use adb or adb:SERIAL")
        self.phone = AdbDevice.from_spec(device, binary, cpu_mask)
        self.binary = self.phone.prepare()
        self.model_name = self.phone.shell("getprop", "ro.product.model").strip() or "unknown phone"
        self._remote: dict[Path, str] = {}
        weakref.finalize(self, _remove_from_phone, self.phone, self._remote)  # the phone's copies go too

    def key(self) -> dict[str, str]:
        return {
            **super().key(),
            "runtime": "benchmark_model",
            "runtime_version": "phone",
            "machine": f"{self.model_name} ({self.phone.serial or 'adb'}), cpu mask {self.phone.cpu_mask or 'all'}",
        }

    def time(self, models: Sequence[nn.Module], example: torch.Tensor, careful: bool = False) -> list[float]:
        runs, seconds = (100, 3.0) if careful else (self.runs, self.min_seconds)
        out = []
        for model in models:
            path = self._write(model, example)
            if path not in self._remote:
                self._remote[path] = self.phone.push(path, f"mobileprune-probe-{path.parent.name}.tflite")
            remote = self._remote[path]
            timing = self.phone.time_file(self.binary, remote, self.threads, runs, 3, seconds)
            out.append(timing.median_ms if timing.median_ms is not None else timing.mean_ms)
        return out


def _remove_from_phone(phone: AdbDevice, remote: dict[Path, str]) -> None:
    """Best effort: a phone unplugged meanwhile keeps its copies, and that must not fail the run."""
    paths = list(remote.values())
    for start in range(0, len(paths), 200):  # a shell command line has a length limit
        try:
            phone.shell("rm", "-f", *paths[start : start + 200])
        except Exception:  # noqa: BLE001 - nothing the user can act on at exit
            return
