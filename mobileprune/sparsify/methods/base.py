"""What every sparsify method is: a named plug-in that brings `run.model` to `run.sparsity` (see run.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from ...registry import Registry

if TYPE_CHECKING:
    from ..run import SparsifyRun

METHODS: Registry = Registry("method", "mobileprune.sparsify.methods")


class SparsifyMethod:
    name: ClassVar[str]
    description: ClassVar[str]
    needs_training: ClassVar[bool] = False  # the fine-tune steps are the method (gradual, lottery)
    needs_images: ClassVar[bool] = False  # calibration images (obs)

    def run(self, run: SparsifyRun) -> None:
        """Zero weights of `run.model` until `run.sparsity`, leaving the masks in `run.masks`."""
        raise NotImplementedError
