"""ExecuTorch `.pte` lowered to XNNPACK (the CPU backend phones use), checked with its runtime.

Precisions: fp32, and int8 with calibration images: XNNPACK's own PT2E quantizer (per-channel int8
weights, int8 activations whose ranges the images set), so the lowered graph runs XNNPACK's int8 kernels.
The file keeps float input and output tensors (it quantizes inside). Without images there is no int8 file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import pt2e
from .base import FORMATS, Exporter, ExportRequest


@FORMATS.register
class ExecuTorchExporter(Exporter):
    name = "executorch"
    file_name = "model.pte"
    precisions = ("fp32", "int8")
    extra = "executorch"
    requires = ("executorch",)
    distributions = ("executorch",)

    def export(self, request: ExportRequest) -> Path:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        path = self.path_for(request.folder, request.precision)
        model = request.model.eval()
        if request.precision == "int8":
            model = _quantize_int8(request)
        exported = torch.export.export(model, (request.example,))
        program = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()
        path.write_bytes(program.buffer)
        return path

    def run(self, path: Path, inputs: np.ndarray) -> np.ndarray | str:
        from executorch.runtime import Runtime

        method = Runtime.get().load_program(str(path)).load_method("forward")
        outs = [method.execute([torch.from_numpy(s[None].astype(np.float32))])[0].numpy()[0] for s in inputs]
        return np.stack(outs)


def _quantize_int8(request: ExportRequest) -> torch.nn.Module:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    quantized = pt2e.quantized_module(request.model, request.example, quantizer, request.calibration)
    request.notes.append(f"int8 static (activations calibrated on {len(request.calibration)} images)")
    return quantized
