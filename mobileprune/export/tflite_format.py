"""TFLite / LiteRT via litert-torch, checked with ai-edge-litert's interpreter (or tflite_runtime).

Precisions: fp32; fp16 (fp16 weights dequantised at load: half the file, fp32 maths); int8 through
PyTorch's PT2E quantizer. With calibration images the int8 file is full-integer (int8 weights, int8
activations, int8 input and output tensors, as NPUs and the XNNPACK int8 kernels want); without them only
dynamic-range is possible (int8 weights, activations quantised on the fly). The chosen scheme goes into
the request's notes, so the summary and metadata.json say which one a file is.

An app-ready file (the default: NHWC, 0–1 RGB, normalised inside; see app_input.py) carries the standard
TFLite Metadata that MediaPipe Tasks, ML Kit and Android Studio read (tflite_metadata.py), with the class
names packed in, and its int8 variant keeps float32 input and output tensors (int8 inside), the tensor types
MediaPipe's classifier accepts. Every file also carries a `mobileprune` JSON entry (input size, layout,
normalisation, labels) for apps that read the preprocessing themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..quiet import native_output_silenced
from . import mediapipe_client, pt2e, tflite_bias, tflite_file, tflite_metadata, tflite_sparse
from .app_input import AppInput
from .base import FORMATS, Exporter, ExportRequest, ModelAbout

METADATA_NAME = "mobileprune"


@FORMATS.register
class TFLiteExporter(Exporter):
    name = "tflite"
    file_name = "model.tflite"
    precisions = ("fp32", "fp16", "int8")
    extra = "tflite"
    requires = ("litert_torch",)
    distributions = ("litert-torch", "ai-edge-litert")
    default_input = AppInput("nhwc", normalized_in_model=True)
    int8_without_calibration = True  # dynamic-range

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
        finish_file(path, request)
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

    def client_check(self, path: Path, request: ExportRequest, inputs: np.ndarray) -> tuple[str, bool] | None:
        """MediaPipe's ImageClassifier on the file, fed the check images as 8-bit RGB, against the interpreter
        running the same file on the same pixels: whether the app reads the file (input scaling from the
        metadata, labels) as the check of the file's numbers did. Against PyTorch instead, an int8 file's own
        near-tie flips would be charged to the client."""
        if request.app_input != self.default_input:  # MediaPipe takes NHWC images normalised by the metadata
            return None
        if not mediapipe_client.available():
            return f"MediaPipe check skipped ({mediapipe_client.INSTALL})", True
        pixels = np.clip(np.round(inputs * 255.0), 0, 255).astype(np.uint8)
        outputs = self.run(path, pixels.astype(np.float32) / 255.0)
        if isinstance(outputs, str):
            return f"MediaPipe check skipped ({outputs})", True
        expected = outputs.argmax(1)
        with native_output_silenced(), mediapipe_client.image_classifier(path) as classifier:
            got = [mediapipe_client.classify(classifier, image) for image in pixels]
        same = sum(int(g.index == e) for g, e in zip(got, expected, strict=True))
        named = not request.labels or all(g.name == request.labels[g.index] for g in got)
        verdict = f"MediaPipe ImageClassifier top-1 = the interpreter's on {same}/{len(got)} images"
        verdict += ", class names read from the file" if request.labels and named else ""
        verdict += "" if named else ", but its class names do not match the labels"
        return verdict, same >= mediapipe_client.AGREEMENT * len(got) and named


def _quantize_int8(request: ExportRequest):
    """The PT2E-quantized module and its QuantConfig: static if there are calibration images."""
    from litert_torch.quantize import pt2e_quantizer, quant_config

    static = request.calibration is not None and len(request.calibration) > 0
    config = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=not static)
    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(config)
    # litert-torch folds the quantize ops itself
    quantized = pt2e.quantized_module(request.model, request.example, quantizer, request.calibration, fold=False)
    if static:
        request.notes.append(f"int8 full-integer (activations calibrated on {len(request.calibration)} images)")
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


def finish_file(path: Path, request: ExportRequest) -> None:
    """What the app's clients need beyond the converted graph: a float output where MediaPipe needs one,
    sparse weights stored sparse (tflite_sparse.py), the standard metadata with the labels packed in, and
    the `mobileprune` JSON entry."""
    model = tflite_file.read_model(path)
    rescaled = tflite_bias.requantize_biases(model)
    if rescaled:
        request.notes.append(f"{len(rescaled)} int8 biases requantized to input x weight scale (tflite_bias.py)")
    if request.app_input.normalized_in_model and tflite_file.float_output(model):
        request.notes.append("int8 output dequantised to float32 in the file (MediaPipe reads float or uint8)")
    stored = tflite_sparse.store_sparse(model)
    if stored:
        dense, sparse = sum(t.dense_bytes for t in stored), sum(t.sparse_bytes for t in stored)
        request.notes.append(
            f"{len(stored)} weight tensors stored sparse (TFLite sparsity parameters + DENSIFY): "
            f"{dense / 1e6:.2f} MB of weights → {sparse / 1e6:.2f} MB"
        )
        request.metadata["sparse_tensors"] = len(stored)
    kinds = tflite_file.tensor_types(model)
    request.metadata["input"] = {**request.metadata.get("input", {}), "dtype": kinds[0].lower()}
    if request.precision == "int8":
        request.notes.append(f"tensors: {kinds[0]} input, {kinds[1]} output")
    standard = tflite_metadata.metadata_buffer(_describe(request, float_input=kinds[0] == "FLOAT32"))
    tflite_file.set_metadata(model, tflite_metadata.NAME, standard)
    tflite_file.set_metadata(model, METADATA_NAME, json.dumps(request.metadata).encode())
    labels = tflite_metadata.labels_archive(request.labels) if request.labels else b""
    tflite_file.write_model(path, model, labels)


def _describe(request: ExportRequest, float_input: bool) -> tflite_metadata.ImageClassifierInfo:
    """The standard metadata of this file: normalisation in the units of its input tensor, if it is float."""
    spec = request.spec
    if request.app_input.normalized_in_model:  # 0–1 input: MediaPipe maps pixels with (p - 0) / 255
        mean, std, low, high = [0.0], [255.0], [0.0], [1.0]
    else:  # normalised input: per-channel (p - 255 mean) / (255 std); some clients accept one value only
        mean, std = [255.0 * m for m in spec.mean], [255.0 * s for s in spec.std]
        low = [-m / s for m, s in zip(spec.mean, spec.std, strict=True)]
        high = [(1 - m) / s for m, s in zip(spec.mean, spec.std, strict=True)]
    return tflite_metadata.ImageClassifierInfo(
        about=request.about or ModelAbout(spec.arch, ""),
        mean=mean if float_input else None,
        std=std if float_input else None,
        value_min=low,
        value_max=high,
        labels=request.labels,
    )


def read_metadata(path: str | Path) -> dict | None:
    """The `mobileprune` metadata entry of a .tflite file, or None when it has none."""
    data = tflite_file.metadata_entry(path, METADATA_NAME)
    return json.loads(data.decode()) if data is not None else None


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
