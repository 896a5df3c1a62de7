"""Plain PyTorch eager on a `torch.export` file (`model.pt2`): the reference, not a phone runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import RUNTIMES, CannotRun, Runtime, Session, random_input


@RUNTIMES.register
class TorchRuntime(Runtime):
    """Plain PyTorch eager on a `torch.export` file (`model.pt2`): the reference, not a phone runtime."""

    name = "torch"
    suffix = ".pt2"
    module = "torch"
    distribution = "torch"

    def open(self, path: Path, threads: int, compute_units: str = "all") -> Session:
        import torch

        from ...artifacts.safe_pt2 import load_exported
        from ...errors import UserError

        try:
            module = load_exported(path).module()  # refuses files that would run code when loaded
        except UserError as exc:
            raise CannotRun(str(exc)) from exc
        placeholder = next(n for n in module.graph.nodes if n.op == "placeholder" and "val" in n.meta)
        shape = tuple(int(s) for s in placeholder.meta["val"].shape)
        example = torch.from_numpy(random_input(shape, np.float32))

        def run():
            torch.set_num_threads(threads)  # process-wide: set for this model's every run
            with torch.inference_mode():
                return module(example)

        return Session(run, shape, "float32")
