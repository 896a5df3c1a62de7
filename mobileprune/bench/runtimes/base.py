"""What an inference engine for `bench` is: it opens one model file with a fixed thread count.

One module per runtime beside this one, each registered in `RUNTIMES` (found by the file's suffix).

A runtime prepares a seeded input of the file's own shape and dtype (int8 for full-integer TFLite) so
that `Session.run()` times inference alone: no preprocessing, no allocation, no Python conversions.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import ClassVar

import numpy as np

from ...registry import Registry


class CannotRun(Exception):
    """This runtime cannot time the file under the requested conditions; the message says why."""


@dataclass
class Session:
    run: Callable[[], object]  # one inference on the prepared input
    input_shape: tuple[int, ...]
    input_dtype: str


class Runtime(ABC):
    name: ClassVar[str]
    suffix: ClassVar[str]  # model files this runtime opens
    module: ClassVar[str]  # importable module it needs
    distribution: ClassVar[str]  # pip name, for the version and the install hint

    def missing(self) -> str | None:
        return None if importlib.util.find_spec(self.module) else f"{self.module} (pip install {self.distribution})"

    def version(self) -> str:
        try:
            return metadata.version(self.distribution)
        except metadata.PackageNotFoundError:
            return "not installed"

    @abstractmethod
    def open(self, path: Path, threads: int, compute_units: str = "all") -> Session:
        """Load `path` so that it runs on `threads` CPU threads (`compute_units`: Core ML only)."""


RUNTIMES: Registry[Runtime] = Registry("runtime", "mobileprune.bench.runtimes")


def runtime_for(path: Path) -> Runtime | None:
    """The runtime that opens this file, by suffix (`.fp16.tflite` is a `.tflite`)."""
    for name in RUNTIMES.names():
        runtime = RUNTIMES.create(name)
        if path.name.endswith(runtime.suffix):
            return runtime
    return None


def random_input(shape, dtype) -> np.ndarray:
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)
