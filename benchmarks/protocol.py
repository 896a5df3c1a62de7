"""What the ImageNet benchmarks share: the shared assets and the held-out split of the accuracy protocol."""

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
