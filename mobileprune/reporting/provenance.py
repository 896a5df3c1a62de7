"""Where a result came from: library versions and machine facts, written into every report and benchmark."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path

import torch

from ..version import __version__


def versions() -> dict[str, str]:
    """The libraries that decide a pruning result."""
    import timm
    import torch_pruning
    import torchvision

    return {
        "mobileprune": revision(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "torch_pruning": getattr(torch_pruning, "__version__", "?"),
    }


@functools.lru_cache(maxsize=1)
def revision() -> str:
    """The package version, with the git commit when it runs from a checkout (`.dirty` when the package's
    files differ from it): benchmark rows measured at different commits must stay tellable apart."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():  # an installed copy: the version is all there is
        return __version__
    try:
        git = ["git", "-C", str(root)]
        sha = subprocess.run([*git, "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True, timeout=10)
        changed = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no", "--", "mobileprune"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return __version__
    if sha.returncode != 0 or not sha.stdout.strip():
        return __version__
    return f"{__version__}+g{sha.stdout.strip()}{'.dirty' if changed.stdout.strip() else ''}"


def machine_facts() -> dict:
    """What a timing depends on besides the model."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
