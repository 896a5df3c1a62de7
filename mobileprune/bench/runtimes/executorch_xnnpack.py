"""ExecuTorch with its XNNPACK delegate, for `.pte` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import RUNTIMES, CannotRun, Runtime, Session, random_input


@RUNTIMES.register
class ExecuTorch(Runtime):
    """ExecuTorch's runtime with its XNNPACK delegate.

    Its thread pool is one per process and sized at start-up (to the core count); resizing it once
    programs are loaded crashes the process (`_unsafe_reset_threadpool` means it), so only that thread
    count is timed and other counts are reported as not timed.
    """

    name = "executorch"
    suffix = ".pte"
    module = "executorch"
    distribution = "executorch"

    def open(self, path: Path, threads: int, compute_units: str = "all") -> Session:
        import torch
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime as ETRuntime

        pool = portable_lib._threadpool_get_thread_count()
        if threads != pool:
            raise CannotRun(f"its thread pool is fixed at {pool} per process; time it with --threads {pool}")
        method = ETRuntime.get().load_program(str(path)).load_method("forward")
        meta = method.metadata.input_tensor_meta(0)
        shape = tuple(meta.sizes())
        inputs = [torch.from_numpy(random_input(shape, np.float32))]
        return Session(lambda: method.execute(inputs), shape, "float32")
