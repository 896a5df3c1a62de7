"""The Python API, in the order of the data path; the CLI calls only these.

loaded = load_model("mobilenet_v2.pth", arch="mobilenet_v2")
data = open_data("images/", loaded.spec.input_size, loaded.spec.mean, loaded.spec.std)
result = shrink(loaded, ShrinkConfig(target=0.5, by="macs", distill=True), data)
sparse = sparsify(load_model("shrunk/"), SparsifyConfig(sparsity=0.7, method="gradual", epochs=2), data)
save_output(result, "shrunk/")
model = load("shrunk/")
results = convert(load_model("shrunk/"), ["tflite", "onnx"], "bundle/")
speed = bench([open_bench_model("original.tflite"), open_bench_model("bundle/")], BenchConfig())
"""

from __future__ import annotations

from pathlib import Path

from .artifacts import LoadedModel, check_output_dir, load, load_model, read_report, save_output
from .bench import BenchConfig, BenchModel, BenchResult, bench_on_phone, open_bench_model
from .bench import bench as _bench_here
from .compare import Comparison, Predictor, check_compare_dir, compare_models, open_predictor, write_comparison
from .errors import UserError
from .export import convert
from .models import ModelSpec
from .models.labels import class_ids
from .progress import SILENT, Progress
from .prune.config import ShrinkConfig
from .prune.pipeline import ShrinkResult, shrink
from .prune.report import ShrinkReport
from .prune.resolution import ResolutionCut, auto_size, cut_resolution, kept_size_reason
from .sparsify.config import SparsifyConfig
from .sparsify.run import sparsify
from .sweep import run_sweep as sweep
from .train.data import DataSplits, ImageSet, open_data, open_image_folder


def open_shrink_data(
    spec: ModelSpec, data: str | Path | None, eval_data: str | Path | None, *, distill: bool, seed: int = 0
) -> tuple[DataSplits | None, ImageSet | None]:
    """The training and evaluation images of a shrink run, with class indices matched to the model's.

    Class folders map to the model's class ids where it has them (ImageNet wnids), so evaluation folders
    may hold any subset of the classes. With `distill` the training labels are not used, so training
    folders of other classes (CIFAR for an ImageNet model) are fine.
    """
    ids = class_ids(spec)
    splits = None
    if data is not None:
        splits = open_data(
            data, spec.input_size, spec.mean, spec.std, seed, classes=None if distill else ids, val_classes=ids
        )
    evals = open_image_folder(eval_data, spec.input_size, spec.mean, spec.std, classes=ids) if eval_data else None
    return splits, evals


def compare(
    models: list[str],
    eval_data: str | Path,
    labels: list[str] | None = None,
    load_args: dict | None = None,
    progress: Progress = SILENT,
) -> Comparison:
    """The first model (unpruned) against the others on labelled `eval_data`, class by class (see compare/)."""
    if len(models) < 2:
        raise UserError("compare needs the unpruned model and at least one pruned model")
    predictors: list[Predictor] = []
    for argument in models:
        predictors.append(open_predictor(argument, predictors[0].spec if predictors else None, load_args or {}))
    spec = predictors[0].spec
    images = open_image_folder(eval_data, spec.input_size, spec.mean, spec.std, classes=class_ids(spec))
    if len(images.classes) > spec.num_classes:
        raise UserError(
            f"'{eval_data}' has {len(images.classes)} classes, the model predicts {spec.num_classes}: "
            "evaluate on the classes it was trained on"
        )
    if labels is not None and len(labels) != spec.num_classes:
        raise UserError(f"--labels has {len(labels)} names, the model predicts {spec.num_classes} classes")
    return compare_models(predictors, images, labels, progress)


def bench(
    models: list[BenchModel],
    config: BenchConfig,
    progress: Progress = SILENT,
    *,
    device: str | None = None,
    benchmark_binary: str | None = None,
    cpu_mask: str | None = None,
) -> BenchResult:
    """Time `models` interleaved on this machine, or with `device="adb[:SERIAL]"` on an Android phone."""
    if device:
        return bench_on_phone(device, benchmark_binary, cpu_mask, models, config)
    return _bench_here(models, config, progress)


__all__ = [
    "BenchConfig",
    "BenchModel",
    "BenchResult",
    "LoadedModel",
    "ShrinkConfig",
    "ShrinkReport",
    "ShrinkResult",
    "bench",
    "check_compare_dir",
    "check_output_dir",
    "compare",
    "write_comparison",
    "convert",
    "load",
    "load_model",
    "open_bench_model",
    "open_data",
    "open_image_folder",
    "open_shrink_data",
    "cut_resolution",
    "auto_size",
    "kept_size_reason",
    "ResolutionCut",
    "read_report",
    "save_output",
    "shrink",
    "sparsify",
    "SparsifyConfig",
    "sweep",
]
