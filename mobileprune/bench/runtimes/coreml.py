"""Core ML predictions of an `.mlpackage` (macOS only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import RUNTIMES, CannotRun, Runtime, Session


@RUNTIMES.register
class CoreML(Runtime):
    """Core ML predictions of an `.mlpackage` (macOS only): `compute_units` cpu (CPU only) or all (+GPU/ANE).

    Core ML schedules its own threads, so the thread count is recorded but does not apply.
    """

    name = "coreml"
    suffix = ".mlpackage"
    module = "coremltools"
    distribution = "coremltools"

    def open(self, path: Path, threads: int, compute_units: str = "all") -> Session:
        import platform

        if platform.system() != "Darwin":
            raise CannotRun("Core ML predicts only on macOS")
        import coremltools as ct
        from PIL import Image

        units = {"cpu": ct.ComputeUnit.CPU_ONLY, "all": ct.ComputeUnit.ALL}[compute_units]
        model = ct.models.MLModel(str(path), compute_units=units)
        size = int(model.user_defined_metadata.get("input_size", "224"))
        pixels = np.random.default_rng(0).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        feed = {"image": Image.fromarray(pixels)}
        return Session(lambda: model.predict(feed), (1, 3, size, size), f"image ({compute_units} compute units)")
