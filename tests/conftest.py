"""Shared fixtures: tiny models, an in-process CLI runner, and small image folders made on the fly."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mobileprune.cli import main

# Reduced variants of the architectures `shrink` must handle; 10 classes keep the classifier small.
TINY_ARCHS = {
    "mobilenet_v1": {},
    "mobilenet_v2": {"width_mult": 0.25},
    "mobilenet_v3_small": {"width_mult": 0.25},
    "mobilenet_v3_large": {"width_mult": 0.25},
    "timm:efficientnet_lite0": {},
    "timm:ghostnet_050": {},
    "torchvision:mnasnet0_5": {},
    "torchvision:shufflenet_v2_x0_5": {},
    "torchvision:resnet18": {},
}


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """Run `mobileprune ARGS` in-process; returns exit code and captured output."""

    def run(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["mobileprune", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def write_images(
    folder: Path, classes: dict[str, tuple[int, int, int]], per_class: int, size: int = 32, seed: int = 0
) -> None:
    """Noisy solid-colour JPEGs, one colour per class: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    for name, rgb in classes.items():
        d = folder / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(np.array(rgb) + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(d / f"{i}.jpg")


def lively(model: torch.nn.Module, size: int = 32) -> torch.nn.Module:
    """A freshly built network whose top-1 depends on the image.

    torchvision's initialisation gives MobileNets logits of ~1e-8 (a near-zero head on shrinking
    activations), so every top-1 comparison is a tie; batch-norm statistics measured on noise and a
    unit-scale head make the predicted classes differ from image to image.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a plain average over the batches
            module.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(torch.randn(64, 3, size, size))
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    torch.nn.init.normal_(head.weight, std=0.5)
    return model.eval()


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """train/ and val/ with two colour classes, plus one corrupt file in train."""
    root = tmp_path / "data"
    colours = {"red": (220, 30, 30), "blue": (30, 30, 220)}
    write_images(root / "train", colours, 24)
    write_images(root / "val", colours, 8, seed=1)
    (root / "train" / "red" / "broken.jpg").write_bytes(b"not a jpeg at all")
    return root


if os.environ.get("PYTEST_XDIST_WORKER"):
    # one thread per test worker: `make test` runs as many workers as cores, and oversubscribed threads
    # made the suite slower and its numerics depend on the machine's load
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


class SkipAroundTheChain(torch.nn.Module):
    """Blocks in an nn.Sequential, but the forward adds the input back after the first block: the chain of
    blocks is not how this model runs (the block-by-block passes must notice and fall back)."""

    def __init__(self, pooled: bool = False):
        super().__init__()
        self.body = torch.nn.Sequential(*[torch.nn.Conv2d(4, 4, 1) for _ in range(4)])
        self.pooled = pooled

    def forward(self, x):
        y = self.body[0](x) + x
        for block in self.body[1:]:
            y = block(y)
        return y.mean((2, 3)) if self.pooled else y


def redundant_pair(*consumer: torch.nn.Module):
    """conv a (4 → 6 channels, 1x1, ReLU) feeding conv b (or the given consumer layers): after the ReLU, a's
    channels 4 and 5 are exact multiples of channels 0 and 1 (ReLU(2z) = 2 ReLU(z)), so a consumer re-fitted
    without them loses nothing; channel 3 is independent of the others."""
    torch.manual_seed(0)
    layers = consumer or (torch.nn.Conv2d(6, 3, 1),)
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 6, 1), torch.nn.ReLU(), *layers).eval()
    with torch.no_grad():
        for copy_, source, scale in ((4, 0, 2.0), (5, 1, 0.5)):
            model[0].weight[copy_] = scale * model[0].weight[source]
            model[0].bias[copy_] = scale * model[0].bias[source]
    return model
