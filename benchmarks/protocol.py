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
    """The CIFAR-10 app model (as class_damage.py made it), its load arguments, and its training data: the
    same 8,000 training images every CIFAR benchmark fine-tunes on. Returns (loaded, load_args, data, root)."""
    import random

    from mobileprune import load_model
    from mobileprune.train.data import open_data

    root = next(p.parent for p in (work / "cifar10").rglob("train") if p.is_dir())
    load_args = {"arch": "mobilenet_v2", "num_classes": 10, "input_size": CIFAR_SIZE}
    app = load_model(str(work / "cifar_app.pt"), **load_args)
    data = open_data(root, CIFAR_SIZE, app.spec.mean, app.spec.std)
    data.train.samples = random.Random(0).sample(data.train.samples, 8000)  # as class_damage.py's shrink
    return app, load_args, data, root
