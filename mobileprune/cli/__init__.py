"""The `mobileprune` command: a thin layer over `mobileprune.api`, one module per command."""

from . import bench, compare, convert, info, plot_filters, plugins, profile, report, shrink, sparsify, sweep  # noqa: F401  (register commands)
from .app import app, main

__all__ = ["app", "main"]
