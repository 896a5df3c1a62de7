"""Anything `compare` is given, as one callable: normalised NCHW images in, class scores out.

PyTorch models (shrink/sparsify folders, checkpoints, zoo names, .pt2) run in PyTorch. Exported files
(`.tflite`, `.onnx`, `.pte`) run in their own runtime through the exporter's `run`, fed the way the file's
input is described (its bundle's metadata.json, or the .tflite's own `mobileprune` entry: NHWC, 0–1 pixels),
so the int8 .tflite an app ships is judged, not the PyTorch model it came from.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..artifacts import LoadedModel, load_model
from ..errors import UserError
from ..export.app_input import AppInput
from ..export.base import FORMATS, Exporter
from ..models import ModelSpec

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")  # weights only: they need --arch and friends


@dataclass
class Predictor:
    label: str
    spec: ModelSpec  # input size, normalisation, classes (an exported file borrows its source model's)
    predict: Callable[[torch.Tensor], np.ndarray]  # normalised NCHW batch → (batch, classes) scores
    kind: str  # "PyTorch" or the file's format


def exported_format(path: Path) -> Exporter | None:
    """The exporter whose files end like `path` (`.int8.tflite` is a tflite), or None for PyTorch sources."""
    for name in FORMATS.names():
        exporter = FORMATS.create(name)
        if exporter.takes_tensor_input and path.is_file() and path.name.endswith(exporter.file_name.split(".", 1)[1]):
            return exporter
    return None


def open_predictor(argument: str, reference: ModelSpec | None, load_args: dict) -> Predictor:
    """A predictor for one `compare` argument; `reference` is the first model's spec (None for the first)."""
    path = Path(argument)
    exporter = exported_format(path)
    if exporter is None:
        weights_only = reference is None or path.suffix in CHECKPOINT_SUFFIXES
        args = (
            load_args if weights_only else {k: v for k, v in load_args.items() if k in ("input_size", "trust_pickle")}
        )
        loaded = load_model(argument, **args)
        return torch_predictor(loaded, argument)
    if reference is None:
        raise UserError(
            f"'{argument}': the first model must be a PyTorch model (the unpruned one), not a {path.suffix}"
        )
    missing = exporter.missing()
    if missing:
        raise UserError(f"'{argument}' needs {missing} to run: pip install mobileprune[{exporter.extra}]")
    app_input, size = file_input(path)
    if size is not None and size != reference.input_size:
        raise UserError(
            f"'{argument}' has input size {size}, the first model has {reference.input_size}: "
            "compare prunings of one model"
        )

    def predict(images: torch.Tensor) -> np.ndarray:
        outputs = exporter.run(path, app_input.feed(images.numpy(), reference))
        if isinstance(outputs, str):
            raise UserError(f"cannot run '{argument}' here: {outputs}")
        return outputs

    return Predictor(argument.rstrip("/"), reference, predict, exporter.name)


def torch_predictor(loaded: LoadedModel, label: str) -> Predictor:
    model = loaded.model.eval()

    def predict(images: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return model(images).numpy()

    return Predictor(label.rstrip("/"), loaded.spec, predict, "PyTorch")


def file_input(path: Path) -> tuple[AppInput, int | None]:
    """How the file's input differs from PyTorch's (layout, 0–1 pixels) and its size, from its metadata."""
    described = _described_input(path)
    if described is None:
        return AppInput(), None
    layout = str(described.get("layout", "NCHW")).lower()
    size = described.get("size", [None])[0]
    return AppInput(layout if layout in ("nchw", "nhwc") else "nchw", "normalized_in_model" in described), size


def _described_input(path: Path) -> dict | None:
    bundle = path.parent / "metadata.json"
    if bundle.is_file():
        try:
            for entry in json.loads(bundle.read_text()).get("formats", []):
                if entry.get("file") == path.name and entry.get("input"):
                    return entry["input"]
        except (ValueError, AttributeError):
            pass
    if path.name.endswith(".tflite"):
        from ..export.tflite_format import read_metadata

        embedded = read_metadata(path)
        return embedded.get("input") if embedded else None
    return None
