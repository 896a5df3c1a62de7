"""ExecuTorch `.pte` lowered to XNNPACK (the CPU backend phones use), checked with its runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import FORMATS, Exporter, ExportRequest


@FORMATS.register
class ExecuTorchExporter(Exporter):
    name = "executorch"
    file_name = "model.pte"
    extra = "executorch"
    requires = ("executorch",)
    distributions = ("executorch",)

    def export(self, request: ExportRequest) -> Path:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        path = request.folder / self.file_name
        exported = torch.export.export(request.model.eval(), (request.example,))
        program = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()
        path.write_bytes(program.buffer)
        return path

    def run(self, path: Path, inputs: np.ndarray) -> np.ndarray | str:
        from executorch.runtime import Runtime

        method = Runtime.get().load_program(str(path)).load_method("forward")
        outs = [method.execute([torch.from_numpy(s[None].astype(np.float32))])[0].numpy()[0] for s in inputs]
        return np.stack(outs)
