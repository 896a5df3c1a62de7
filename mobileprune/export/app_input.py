"""What a file's input tensor takes, when it is not PyTorch's normalised NCHW: the app-ready variants.

Android's camera and image pipelines hand over NHWC 8-bit RGB, and MediaPipe Tasks can only apply one
mean and one std to every channel (its NormalizationOptions), so ImageNet's per-channel (x - mean) / std
cannot be left to the app there. An app-ready input therefore takes 0–1 RGB (pixel / 255) and does the
per-channel normalisation as a layer inside the model: exact, and the app cannot get it wrong. The other
formats keep PyTorch's tensor by default, because their users feed what their PyTorch code fed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from ..errors import UserError
from ..models import ModelSpec

LAYOUTS = ("nchw", "nhwc")
NORMALIZE = ("in-model", "in-app")


@dataclass(frozen=True)
class AppInput:
    layout: str = "nchw"  # of the file's input tensor
    normalized_in_model: bool = False  # True: the file takes 0–1 RGB and normalises per channel itself

    def wrap(self, model: nn.Module, spec: ModelSpec) -> nn.Module:
        """The module to convert: `model` behind this input's normalisation and layout change."""
        if self.normalized_in_model:
            model = NormalizedInput(model, spec.mean, spec.std)
        return ChannelsLastInput(model).eval() if self.layout == "nhwc" else model.eval()

    def feed(self, images: np.ndarray, spec: ModelSpec) -> np.ndarray:
        """Normalised NCHW images (what PyTorch takes) → the same images as this file's input takes them."""
        if self.normalized_in_model:
            images = unit_rgb(images, spec.mean, spec.std)
        return np.ascontiguousarray(images.transpose(0, 2, 3, 1)) if self.layout == "nhwc" else images

    def describe(self, spec: ModelSpec) -> dict:
        """The input section of the bundle's metadata: what the app must do to a picture before feeding it."""
        size = [spec.input_size, spec.input_size]
        if self.normalized_in_model:
            return {
                "size": size,
                "layout": self.layout.upper(),
                "dtype": "float32",
                "range": "0-1 RGB (pixel / 255); the model normalises per channel itself",
                "mean": [0.0, 0.0, 0.0],
                "std": [1.0, 1.0, 1.0],
                "normalized_in_model": {"mean": list(spec.mean), "std": list(spec.std)},
            }
        return {
            "size": size,
            "layout": self.layout.upper(),
            "dtype": "float32",
            "range": "0-1 RGB, then (x - mean) / std",
            "mean": list(spec.mean),
            "std": list(spec.std),
        }


def parse_layout(text: str) -> str:
    name = text.strip().lower()
    if name not in LAYOUTS:
        raise UserError(f"unknown layout '{text}': choose from {', '.join(LAYOUTS)}")
    return name


def parse_normalize(text: str) -> bool:
    """`in-model` → True (the file normalises), `in-app` → False (the app feeds normalised tensors)."""
    name = text.strip().lower()
    if name not in NORMALIZE:
        raise UserError(f"unknown --normalize '{text}': choose from {', '.join(NORMALIZE)}")
    return name == "in-model"


class ChannelsLastInput(nn.Module):
    """Takes NHWC input, as Android camera pipelines deliver it, and hands NCHW to the model."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.permute(0, 3, 1, 2))


class NormalizedInput(nn.Module):
    """0–1 RGB in, (x - mean) / std per channel, then the model: the normalisation the app must not redo."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def unit_rgb(inputs: np.ndarray, mean, std) -> np.ndarray:
    """Normalised NCHW floats → the 0–1 RGB they came from (not rounded)."""
    m, s = np.asarray(mean).reshape(1, 3, 1, 1), np.asarray(std).reshape(1, 3, 1, 1)
    return (inputs * s + m).astype(np.float32)


def to_pixels(inputs: np.ndarray, mean, std) -> np.ndarray:
    """Normalised NCHW floats → uint8 NCHW pixels (clipped, rounded)."""
    m, s = np.asarray(mean).reshape(1, 3, 1, 1), np.asarray(std).reshape(1, 3, 1, 1)
    return np.clip(np.round((inputs * s + m) * 255.0), 0, 255).astype(np.uint8)


def normalize(unit: np.ndarray, mean, std) -> np.ndarray:
    m, s = np.asarray(mean).reshape(1, 3, 1, 1), np.asarray(std).reshape(1, 3, 1, 1)
    return ((unit - m) / s).astype(np.float32)
