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
        try:
            program = torch.onnx.export(
                request.model.eval(),
                (example,),
                dynamo=True,
                opset_version=OPSET,
                input_names=["input"],
                output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},),
            )
        except Exception:  # a graph fixed at one image (a model that came as a .pt2): keep its batch of 1
            program = torch.onnx.export(
                request.model.eval(),
                (request.example,),
                dynamo=True,
                opset_version=OPSET,
                input_names=["input"],
                output_names=["logits"],
            )
            request.notes.append("fixed batch of 1 (the model's graph does not allow another)")
        program.save(str(path))
        return path

    def run(self, path: Path, inputs: np.ndarray) -> np.ndarray | str:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        spec = session.get_inputs()[0]
        if spec.shape[0] == 1:  # a fixed batch of one: feed image by image
            return np.concatenate([session.run(None, {spec.name: x[None].astype(np.float32)})[0] for x in inputs])
        return session.run(None, {spec.name: inputs.astype(np.float32)})[0]
