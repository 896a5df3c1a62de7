"""ONNX (opset 18) via torch.onnx's exporter, checked with onnxruntime.

Precisions: fp32, and int8 through onnxruntime's own quantizer, so the file is what ONNX Runtime's int8
kernels expect: static QDQ (per-channel int8 weights, uint8 activations whose ranges the calibration
images set: the U8S8 pairing ORT's CPU int8 kernels run). Without calibration images there is no
int8 ONNX file: ORT's dynamic quantization is meant for transformers' MatMuls (its docs recommend static
for CNNs), and it could not even read the exporter's classifier Gemm. The scheme goes into the request's
notes (summary, metadata.json).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from .base import FORMATS, Exporter, ExportRequest

OPSET = 18


@FORMATS.register
class OnnxExporter(Exporter):
    name = "onnx"
    file_name = "model.onnx"
    precisions = ("fp32", "int8")
    extra = "onnx"
    requires = ("onnx", "onnxscript", "onnxruntime")
    distributions = ("onnx", "onnxscript", "onnxruntime")

    def export(self, request: ExportRequest) -> Path:
        path = self.path_for(request.folder, request.precision)
        if request.precision == "int8":
            with tempfile.TemporaryDirectory() as tmp:
                float_file = _export_fp32(request, Path(tmp) / "model.onnx")
                _quantize_int8(float_file, path, request)
        else:
            _export_fp32(request, path)
        return path

    def run(self, path: Path, inputs: np.ndarray) -> np.ndarray | str:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        spec = session.get_inputs()[0]
        if spec.shape[0] == 1:  # a fixed batch of one: feed image by image
            return np.concatenate([session.run(None, {spec.name: x[None].astype(np.float32)})[0] for x in inputs])
        return session.run(None, {spec.name: inputs.astype(np.float32)})[0]


def _export_fp32(request: ExportRequest, path: Path) -> Path:
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


def _quantize_int8(float_file: Path, path: Path, request: ExportRequest) -> None:
    """onnxruntime's static QDQ quantizer on the fp32 file, activation ranges from the calibration images."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = float_file.with_name("prepared.onnx")
    # folds constants and fuses what the quantizer should see as one op (conv + bias); the symbolic shape
    # pass is for transformers' dynamic shapes and is not needed for a CNN's
    quant_pre_process(str(float_file), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(path),
        _Calibration(request.calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    request.notes.append(f"int8 static QDQ (activations calibrated on {len(request.calibration)} images)")


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over the calibration images, a batch of one at a time
    (a file with a fixed batch of one takes nothing else)."""

    def __init__(self, images: np.ndarray):
        self._images = iter(images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        image = next(self._images, None)
        return None if image is None else {"input": np.ascontiguousarray(image[None], dtype=np.float32)}
