"""What the ImageNet benchmarks share: the shared assets, the held-out split of the accuracy protocol, and
the paired comparison of two models on the same photos."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_imagenet.pth"


def build_split(split: Path | None = None) -> Path:
    """`split` if given (an imagenet_split.py output), else a fresh one: odd classes unlabeled, even held out."""
    if split is not None:
        return split
    out = Path(tempfile.mkdtemp(prefix="mobileprune-split-"))
    subprocess.run([sys.executable, str(SHARED / "protocols" / "imagenet_split.py"), str(out)], check=True)
    return out


def paired(first: list[bool], second: list[bool]) -> tuple[int, int, float]:
    """Photos right only with the first model, only with the second, and McNemar's z (positive: the second
    is better): on the same photos, far more sensitive than two top-1 numbers side by side."""
    only_first = sum(x and not y for x, y in zip(first, second, strict=True))
    only_second = sum(y and not x for x, y in zip(first, second, strict=True))
    return only_first, only_second, round((only_second - only_first) / max(only_first + only_second, 1) ** 0.5, 2)


CIFAR_WORK = Path("/tmp/mobileprune-class-damage")  # where class_damage.py caches the CIFAR-10 app model
CIFAR_SIZE = 96


def cifar_app(work: Path = CIFAR_WORK):
    """The CIFAR-10 app model, its load arguments, and its training data: the same 8,000 training images every
    CIFAR benchmark fine-tunes on. The model is made on first use and cached in `work` (`make_cifar_app`).
    Returns (loaded, load_args, data, root)."""
    import random

    from mobileprune import load_model
    from mobileprune.train.data import open_data

    root = cifar_root(work)
    make_cifar_app(work)
    app = load_model(str(work / "cifar_app.pt"), **CIFAR_LOAD_ARGS)
    data = open_data(root, CIFAR_SIZE, app.spec.mean, app.spec.std)
    data.train.samples = random.Random(0).sample(data.train.samples, 8000)  # as class_damage.py's shrink
    return app, dict(CIFAR_LOAD_ARGS), data, root


CIFAR_LOAD_ARGS = {"arch": "mobilenet_v2", "num_classes": 10, "input_size": CIFAR_SIZE}


def cifar_root(work: Path = CIFAR_WORK) -> Path:
    """The folder holding CIFAR-10's train/ and test/ class folders, unpacked from the shared zip once."""
    import zipfile

    if not (work / "cifar10").is_dir():
        with zipfile.ZipFile(SHARED / "data" / "cifar10-jpeg.zip") as zf:
            zf.extractall(work / "cifar10")
    return next(p.parent for p in (work / "cifar10").rglob("train") if p.is_dir())


def make_cifar_app(work: Path = CIFAR_WORK) -> float | None:
    """Make the app model (a 10-class state dict, as a user would hold it) unless `work` has it: the shared
    ImageNet MobileNetV2 with a new 10-class classifier, fine-tuned on all of CIFAR-10's training images at
    96 px for 1,200 steps of 32. The new classifier is seeded, so every benchmark that makes it makes the
    same one. Returns the seconds it took, or None when it was cached."""
    import time

    import torch
    import torch.nn as nn

    from mobileprune import load_model
    from mobileprune.train.data import make_loader, open_data
    from mobileprune.train.loop import TrainConfig, Trainer

    app = work / "cifar_app.pt"
    if app.exists():
        return None
    started = time.time()
    base = load_model(WEIGHTS, arch="mobilenet_v2")
    data = open_data(cifar_root(work), CIFAR_SIZE, base.spec.mean, base.spec.std)
    torch.manual_seed(0)
    base.model.classifier[1] = nn.Linear(base.model.classifier[1].in_features, 10)
    Trainer(make_loader(data.train, 32, True), TrainConfig(lr=3e-4)).train(base.model, 1200, cosine=True)
    torch.save(base.model.state_dict(), app)
    return round(time.time() - started, 1)
