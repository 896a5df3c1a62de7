"""Core ML `.mlpackage` (ML program, fp16 by default) with a camera-ready image input and class labels.

int8 is Core ML's weight compression: every large conv and linear weight stored as int8 with one scale per
output channel, dequantized at load, activations in fp16: a smaller file, and no images needed. Quantizing
activations too would need calibration, which coremltools does by running the model: macOS only.

The app hands Core ML an RGB image; Core ML's image input can only scale all channels by one number, so
the input is scaled to 0–1 there and the per-channel (x - mean) / std is a layer inside the model: exact,
unlike one averaged std. coremltools converts on Linux but predicts only on macOS: elsewhere the check
reads the saved spec back (input/output names and shapes, op count) and records "numeric check: needs
macOS"; on macOS the check feeds the same 8-bit images to PyTorch and Core ML.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import torch

from .app_input import NormalizedInput, normalize, to_pixels
from .base import FORMATS, Exporter, ExportRequest

MINIMUM_TARGET = "iOS16"


@FORMATS.register
class CoreMLExporter(Exporter):
    name = "coreml"
    file_name = "model.mlpackage"
    precisions = ("fp16", "fp32", "int8")
    int8_without_calibration = True  # weight-only: the weights alone set their scales
    takes_tensor_input = False  # ct.ImageType: the app hands over a camera frame, layout is Core ML's job
    extra = "coreml"
    requires = ("coremltools",)
    distributions = ("coremltools",)

    def check_options(self, options: dict[str, str]) -> None:
        if "coreml_target" in options and self.missing() is None:
            coreml_target(options["coreml_target"])

    def export(self, request: ExportRequest) -> Path:
        import coremltools as ct

        spec = request.spec
        size = request.example.shape[-1]
        image = ct.ImageType(name="image", shape=(1, 3, size, size), scale=1 / 255.0)
        labels = request.labels or [str(i) for i in range(spec.num_classes)]
        model = NormalizedInput(request.model.eval(), spec.mean, spec.std).eval()
        example = torch.rand(1, 3, size, size)
        exported = torch.export.export(model, (example,)).run_decompositions({})
        mlmodel = ct.convert(
            exported,
            inputs=[image],
            classifier_config=ct.ClassifierConfig(labels),
            minimum_deployment_target=coreml_target(request.options.get("coreml_target", MINIMUM_TARGET)),
            compute_precision=ct.precision.FLOAT32 if request.precision == "fp32" else ct.precision.FLOAT16,
        )
        if request.precision == "int8":
            mlmodel = int8_weights(mlmodel)
            request.notes.append("int8 weights (per output channel, symmetric), fp16 activations")
        mlmodel.user_defined_metadata.update(
            {"mean": json.dumps(list(spec.mean)), "std": json.dumps(list(spec.std)), "input_size": str(size)}
        )
        about = request.about
        mlmodel.author = (about.author if about and about.author else "") or "mobileprune"
        mlmodel.short_description = about.description if about else f"{spec.arch} classifier, {size}x{size} RGB"
        if about and about.license:
            mlmodel.license = about.license
        if about and about.version:
            mlmodel.version = about.version
        path = self.path_for(request.folder, request.precision)
        mlmodel.save(str(path))
        return path

    def representable(self, inputs: np.ndarray, spec) -> np.ndarray:
        """What an 8-bit RGB image can carry: pixels clipped to 0–255 and rounded, normalised back."""
        return normalize(to_pixels(inputs, spec.mean, spec.std) / 255.0, spec.mean, spec.std)

    def run(self, path: Path, inputs: np.ndarray) -> np.ndarray | str:
        if platform.system() != "Darwin":
            return "numeric check: needs macOS"
        import coremltools as ct
        from PIL import Image

        model = ct.models.MLModel(str(path))
        mean = json.loads(model.user_defined_metadata["mean"])
        std = json.loads(model.user_defined_metadata["std"])
        output = next(o.name for o in model.get_spec().description.output if o.name != "classLabel")
        labels = None
        rows = []
        for pixels in to_pixels(inputs, mean, std):
            scores = model.predict({"image": Image.fromarray(pixels.transpose(1, 2, 0))})[output]
            labels = labels or list(scores)  # the classifier's label order is the logits' order
            rows.append([scores[label] for label in labels])
        return np.asarray(rows, dtype=np.float32)

    def describe(self, path: Path) -> dict:
        return describe_spec(path)


def coreml_target(name: str):
    """coremltools' deployment target by name (iOS16, iOS17, macOS14, ...); a wrong name lists the choices."""
    import coremltools as ct

    from ..errors import UserError

    choices = [t.name for t in ct.target]
    if name not in choices:
        raise UserError(f"unknown Core ML target '{name}': choose from {', '.join(choices)}")
    return getattr(ct.target, name)


def int8_weights(mlmodel):
    """`mlmodel` with its conv and linear weights stored as int8, one scale per output channel (symmetric).

    coremltools' default size threshold (2048 elements) leaves the small tensors (biases, the narrowest
    kernels) in fp16: they weigh almost nothing next to the wide 1x1 convs and the classifier."""
    from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

    config = OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
    return linear_quantize_weights(mlmodel, config=OptimizationConfig(global_config=config))


def describe_spec(path: Path) -> dict:
    """What the saved package declares: inputs, outputs, the number of ML-program ops and of compressed
    weights (`constexpr_*` ops: weights stored quantized, expanded when the model loads)."""
    import coremltools as ct

    spec = ct.utils.load_spec(str(path))
    ops = program_ops(spec)
    return {
        "inputs": [i.name for i in spec.description.input],
        "outputs": [o.name for o in spec.description.output],
        "ops": len(ops),
        "compressed_weights": sum(op.type.startswith("constexpr_") for op in ops),
        "classifier": spec.description.predictedFeatureName,
        "author": spec.description.metadata.author,
        "license": spec.description.metadata.license,
        "version": spec.description.metadata.versionString,
    }


def program_ops(spec) -> list:
    """Every operation of a saved ML program's spec (all functions and their block specializations)."""
    return [
        op
        for f in spec.mlProgram.functions.values()
        for block in f.block_specializations.values()
        for op in block.operations
    ]
