"""ONNX (opset 18) via torch.onnx's exporter, checked with onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import FORMATS, Exporter, ExportRequest

OPSET = 18


@FORMATS.register
class OnnxExporter(Exporter):
    name = "onnx"
    file_name = "model.onnx"
    extra = "onnx"
    requires = ("onnx", "onnxscript", "onnxruntime")
    distributions = ("onnx", "onnxscript", "onnxruntime")

    def export(self, request: ExportRequest) -> Path:
        path = request.folder / self.file_name
        # a batch of two: with one, torch.export may specialise the batch size to 1 (e.g. behind a permute)
        # and then refuses the dynamic batch dimension
        example = request.example.expand(2, *request.example.shape[1:]).contiguous()
        program = torch.onnx.export(
            request.model.eval(),
            (example,),
            dynamo=True,
            opset_version=OPSET,
            input_names=["input"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},),
        )
        program.save(str(path))
        return path

    def run(self, path: Path, inputs: np.ndarray) -> np.ndarray | str:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: inputs.astype(np.float32)})[0]
