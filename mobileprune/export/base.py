"""What every format module provides: write the file, and run it (where this machine can) for the check.

A new format is one new module in this package with one `Exporter` subclass registered in `FORMATS`
(the registry imports every module here); `convert()` and the CLI find it by name and never branch on formats.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn as nn

from ..models import ModelSpec
from ..registry import Registry
from .app_input import AppInput


@dataclass
class ModelAbout:
    """What the file is and who made it, for the formats' own description fields (TFLite metadata, Core ML)."""

    name: str
    description: str
    version: str = ""
    author: str = ""
    license: str = ""


@dataclass
class ExportRequest:
    model: nn.Module
    spec: ModelSpec
    example: torch.Tensor  # one input, as the file takes it (see app_input)
    folder: Path  # where the file goes
    labels: list[str] | None = None
    precision: str = "fp32"
    calibration: np.ndarray | None = None  # real images, as the file takes them, for int8 activation ranges
    metadata: dict = field(default_factory=dict)  # what an app needs (input, normalisation, labels)
    notes: list[str] = field(default_factory=list)  # what the exporter chose, e.g. the int8 scheme
    options: dict[str, str] = field(default_factory=dict)  # format-specific, e.g. {"coreml_target": "iOS17"}
    app_input: AppInput = field(default_factory=AppInput)  # what `model`'s input takes (layout, 0–1 or normalised)
    about: ModelAbout | None = None


class Exporter(ABC):
    name: ClassVar[str]  # the --to name
    file_name: ClassVar[str]  # predictable name inside the bundle (for the first precision)
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)  # what it can write; the first is its default
    int8_without_calibration: ClassVar[bool] = False  # an int8 scheme that needs no images (dynamic-range)
    takes_tensor_input: ClassVar[bool] = True  # False: an image input (Core ML), so --layout does not apply
    default_input: ClassVar[AppInput] = AppInput()  # its tensor input without --layout/--normalize
    extra: ClassVar[str]  # `pip install mobileprune[EXTRA]`
    requires: ClassVar[tuple[str, ...]]  # importable modules it needs
    distributions: ClassVar[tuple[str, ...]]  # pip names whose versions go into metadata.json

    def path_for(self, folder: Path, precision: str) -> Path:
        """`model.tflite` for the default precision, `model.fp16.tflite` for another."""
        if precision == self.precisions[0]:
            return folder / self.file_name
        stem, _, suffix = self.file_name.partition(".")
        return folder / f"{stem}.{precision}.{suffix}"

    def missing(self) -> str | None:
        """The first required module that is not installed, or None."""
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                return module
        return None

    def versions(self) -> dict[str, str]:
        out = {}
        for dist in self.distributions:
            try:
                out[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                out[dist] = "not installed"
        return out

    def writable(self, calibrated: bool) -> tuple[str, ...]:
        """The precisions it can write: without calibration images, int8 only where the format has a scheme
        that needs none."""
        if calibrated or self.int8_without_calibration:
            return self.precisions
        return tuple(p for p in self.precisions if p != "int8")

    def check_options(self, options: dict[str, str]) -> None:
        """Refuse a bad format-specific option (raise `UserError`) before any work; most formats take none."""
        return None

    @abstractmethod
    def export(self, request: ExportRequest) -> Path:
        """Write the model file into `request.folder`; returns its path."""

    def representable(self, inputs: np.ndarray, spec: ModelSpec) -> np.ndarray:
        """The check inputs as this format's input can carry them (an image input: 8-bit pixels)."""
        return inputs

    @abstractmethod
    def run(self, path: Path, inputs: np.ndarray) -> np.ndarray | str:
        """Outputs for NCHW `inputs`, or a string saying why this machine cannot run the file."""

    def client_check(self, path: Path, request: ExportRequest, inputs: np.ndarray) -> tuple[str, bool] | None:
        """Load the file in the client an app would use and compare its top-1 with PyTorch's on `inputs`
        (as the file takes them): (verdict, ok), or None when the format has no such client here."""
        return None

    def describe(self, path: Path) -> dict | None:
        """What the saved file declares (inputs, outputs, op count), for formats that cannot run here."""
        return None


FORMATS: Registry[Exporter] = Registry("format", "mobileprune.export")
