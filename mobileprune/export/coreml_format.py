"""Core ML `.mlpackage` (ML program, fp16 by default) with a camera-ready image input and class labels.

coremltools converts on Linux but predicts only on macOS: elsewhere the check reads the saved spec back
(input/output names and shapes, op count) and records "numeric check: needs macOS".
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import torch

from .base import FORMATS, Exporter, ExportRequest

MINIMUM_TARGET = "iOS16"


@FORMATS.register
class CoreMLExporter(Exporter):
    name = "coreml"
    file_name = "model.mlpackage"
    precisions = ("fp16", "fp32")
    takes_tensor_input = False  # ct.ImageType: the app hands over a camera frame, layout is Core ML's job
    extra = "coreml"
    requires = ("coremltools",)
    distributions = ("coremltools",)

    def export(self, request: ExportRequest) -> Path:
        import coremltools as ct

        spec = request.spec
        size = request.example.shape[-1]
        # An app feeds 0–255 pixels; Core ML computes scale * pixel + bias per channel. One scale for all
        # channels (the API's limit), so the mean of the three stds is used; bias is exact per channel.
        std = float(np.mean(spec.std))
        bias = [-m / std for m in spec.mean]
        image = ct.ImageType(name="image", shape=(1, 3, size, size), scale=1 / (255.0 * std), bias=bias)
        labels = request.labels or [str(i) for i in range(spec.num_classes)]
        exported = torch.export.export(request.model.eval(), (request.example,)).run_decompositions({})
        mlmodel = ct.convert(
            exported,
            inputs=[image],
            classifier_config=ct.ClassifierConfig(labels),
            minimum_deployment_target=getattr(ct.target, MINIMUM_TARGET),
            compute_precision=ct.precision.FLOAT16 if request.precision == "fp16" else ct.precision.FLOAT32,
        )
        mlmodel.author = "mobileprune"
        mlmodel.short_description = f"{spec.arch} classifier, {size}x{size} RGB input"
        path = self.path_for(request.folder, request.precision)
        mlmodel.save(str(path))
        return path

    def run(self, path: Path, inputs: np.ndarray) -> np.ndarray | str:
        if platform.system() != "Darwin":
            return "numeric check: needs macOS"
        return "numeric check on macOS is not implemented yet"

    def describe(self, path: Path) -> dict:
        return describe_spec(path)


def describe_spec(path: Path) -> dict:
    """What the saved package declares: inputs, outputs and the number of ML-program ops."""
    import coremltools as ct

    spec = ct.utils.load_spec(str(path))
    ops = sum(
        len(block.operations) for f in spec.mlProgram.functions.values() for block in f.block_specializations.values()
    )
    return {
        "inputs": [i.name for i in spec.description.input],
        "outputs": [o.name for o in spec.description.output],
        "ops": ops,
        "classifier": spec.description.predictedFeatureName,
    }
