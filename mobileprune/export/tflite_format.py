"""TFLite / LiteRT via litert-torch, checked with ai-edge-litert's interpreter (or tflite_runtime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import FORMATS, Exporter, ExportRequest


@FORMATS.register
class TFLiteExporter(Exporter):
    name = "tflite"
    file_name = "model.tflite"
    precisions = ("fp32", "fp16")
    extra = "tflite"
    requires = ("litert_torch",)
    distributions = ("litert-torch", "ai-edge-litert")

    def export(self, request: ExportRequest) -> Path:
        import litert_torch

        quant = None
        if request.precision == "fp16":  # fp16 weights, dequantised at load: half the file, fp32 maths
            from litert_torch.generative.quantize import quant_recipes

            quant = quant_recipes.full_fp16_recipe()
        path = self.path_for(request.folder, request.precision)
        litert_torch.convert(request.model.eval(), (request.example,), quant_config=quant).export(str(path))
        return path

    def run(self, path: Path, inputs: np.ndarray) -> np.ndarray | str:
        interpreter_cls = _interpreter_class()
        if isinstance(interpreter_cls, str):
            return interpreter_cls
        interpreter = interpreter_cls(model_path=str(path))
        interpreter.allocate_tensors()
        inp = interpreter.get_input_details()[0]
        out = interpreter.get_output_details()[0]
        results = []
        for sample in inputs:  # the file has a fixed batch of one, as apps feed it
            interpreter.set_tensor(inp["index"], sample[None].astype(np.float32))
            interpreter.invoke()
            results.append(interpreter.get_tensor(out["index"])[0].copy())
        return np.stack(results)


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter
    except ImportError:
        return "no TFLite interpreter installed (pip install ai-edge-litert)"
