"""TFLite / LiteRT via litert-torch, checked with ai-edge-litert's interpreter (or tflite_runtime).

Precisions: fp32; fp16 (fp16 weights dequantised at load: half the file, fp32 maths); int8 through
PyTorch's PT2E quantizer. With calibration images the int8 file is full-integer (int8 weights, int8
activations, int8 input and output tensors, as NPUs and the XNNPACK int8 kernels want); without them only
dynamic-range is possible (int8 weights, activations quantised on the fly). The chosen scheme goes into
the request's notes, so the summary and metadata.json say which one a file is.

The file also carries a `mobileprune` metadata entry (JSON: input size, layout, mean/std, labels) so an app
can read the preprocessing from the model it bundles.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .base import FORMATS, Exporter, ExportRequest

METADATA_NAME = "mobileprune"


@FORMATS.register
class TFLiteExporter(Exporter):
    name = "tflite"
    file_name = "model.tflite"
    precisions = ("fp32", "fp16", "int8")
    extra = "tflite"
    requires = ("litert_torch",)
    distributions = ("litert-torch", "ai-edge-litert")

    def export(self, request: ExportRequest) -> Path:
        import litert_torch

        model, example = request.model.eval(), request.example
        quant = None
        if request.precision == "fp16":
            from litert_torch.generative.quantize import quant_recipes

            quant = quant_recipes.full_fp16_recipe()
        elif request.precision == "int8":
            model, quant = _quantize_int8(request)
        path = self.path_for(request.folder, request.precision)
        litert_torch.convert(model, (example,), quant_config=quant).export(str(path))
        if request.metadata:
            embed_metadata(path, request.metadata)
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
            interpreter.set_tensor(inp["index"], _quantize(sample[None].astype(np.float32), inp))
            interpreter.invoke()
            results.append(_dequantize(interpreter.get_tensor(out["index"])[0], out))
        return np.stack(results)


def _quantize_int8(request: ExportRequest):
    """The PT2E-quantized module and its QuantConfig: static if there are calibration images."""
    from litert_torch.quantize import pt2e_quantizer, quant_config
    from torchao.quantization.pt2e import quantize_pt2e

    static = request.calibration is not None and len(request.calibration) > 0
    config = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=not static)
    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(config)
    captured = torch.export.export(request.model.eval(), (request.example,)).module()
    prepared = quantize_pt2e.prepare_pt2e(captured, quantizer)
    with torch.no_grad():
        if static:
            for image in request.calibration:  # the captured graph has the example's batch of one
                prepared(torch.from_numpy(np.ascontiguousarray(image[None], dtype=np.float32)))
        else:
            prepared(request.example)  # per-channel weight observers need one pass
    quantized = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
    if static:
        if "input" in request.metadata:  # the app now feeds int8: quantise with the input tensor's scale/zero
            request.metadata = {**request.metadata, "input": {**request.metadata["input"], "dtype": "int8"}}
        request.notes.append(
            f"int8 full-integer (int8 input/output tensors; activations calibrated on "
            f"{len(request.calibration)} images)"
        )
    else:
        request.notes.append("int8 dynamic-range (int8 weights, float activations): no --data to calibrate with")
    return quantized, quant_config.QuantConfig(pt2e_quantizer=quantizer)


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float input → the tensor's dtype, using its (scale, zero point) when it is an integer tensor."""
    dtype = detail["dtype"]
    if not np.issubdtype(dtype, np.integer):
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if not np.issubdtype(detail["dtype"], np.integer):
        return y.astype(np.float32).copy()
    scale, zero = detail["quantization"]
    return (y.astype(np.float32) - zero) * scale


def embed_metadata(path: Path, metadata: dict) -> None:
    """Add (or replace) the `mobileprune` JSON entry in the file's flatbuffer metadata table."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    raw = path.read_bytes()
    model = schema.ModelT.InitFromPackedBuf(raw, 0)
    for buf in model.buffers:  # weights stored after the flatbuffer (by offset) move inside it: offsets
        if buf.offset > 1:  # would shift once the metadata grows the table; files here are far below 2 GB
            buf.data = np.frombuffer(raw, dtype=np.uint8, count=buf.size, offset=buf.offset)
            buf.offset, buf.size = 0, 0
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if _name(m) != METADATA_NAME] + [entry]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(builder.Output())


def read_metadata(path: str | Path) -> dict | None:
    """The `mobileprune` metadata entry of a .tflite file, or None when it has none."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(Path(path).read_bytes(), 0)
    for entry in model.metadata or []:
        if _name(entry) == METADATA_NAME:
            return json.loads(bytes(model.buffers[entry.buffer].data).decode())
    return None


def _name(entry) -> str:
    return entry.name.decode() if isinstance(entry.name, bytes) else str(entry.name)


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
