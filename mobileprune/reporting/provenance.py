"""Where a result came from: library versions and machine facts, written into every report and benchmark."""

from __future__ import annotations

import os
import platform

import torch


def versions() -> dict[str, str]:
    """The libraries that decide a pruning result."""
    import timm
    import torch_pruning
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "torch_pruning": getattr(torch_pruning, "__version__", "?"),
    }


def machine_facts() -> dict:
    """What a timing depends on besides the model."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
