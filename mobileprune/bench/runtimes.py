"""The inference engines `bench` times: each opens one model file with a fixed thread count.

A runtime prepares a seeded input of the file's own shape and dtype (int8 for full-integer TFLite) so
that `Session.run()` times inference alone: no preprocessing, no allocation, no Python conversions.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..registry import Registry


class CannotRun(Exception):
    """This runtime cannot time the file under the requested conditions; the message says why."""


@dataclass
class Session:
    run: Callable[[], object]  # one inference on the prepared input
    input_shape: tuple[int, ...]
    input_dtype: str


class Runtime(ABC):
    name: ClassVar[str]
    suffix: ClassVar[str]  # model files this runtime opens
    module: ClassVar[str]  # importable module it needs
    distribution: ClassVar[str]  # pip name, for the version and the install hint

    def missing(self) -> str | None:
        return None if importlib.util.find_spec(self.module) else f"{self.module} (pip install {self.distribution})"

    def version(self) -> str:
        try:
            return metadata.version(self.distribution)
        except metadata.PackageNotFoundError:
            return "not installed"

    @abstractmethod
    def open(self, path: Path, threads: int, compute_units: str = "all") -> Session:
        """Load `path` so that it runs on `threads` CPU threads (`compute_units`: Core ML only)."""


RUNTIMES: Registry[Runtime] = Registry("runtime")


def runtime_for(path: Path) -> Runtime | None:
    """The runtime that opens this file, by suffix (`.fp16.tflite` is a `.tflite`)."""
    for name in RUNTIMES.names():
        runtime = RUNTIMES.create(name)
        if path.name.endswith(runtime.suffix):
            return runtime
    return None


def _random(shape, dtype) -> np.ndarray:
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


@RUNTIMES.register
class LiteRT(Runtime):
    """The TFLite interpreter phones run, with the XNNPACK CPU delegate (its default)."""

    name = "litert"
    suffix = ".tflite"
    module = "ai_edge_litert"
    distribution = "ai-edge-litert"

    def open(self, path: Path, threads: int, compute_units: str = "all") -> Session:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        interpreter.set_tensor(detail["index"], _random(tuple(detail["shape"]), detail["dtype"]))
        return Session(interpreter.invoke, tuple(int(s) for s in detail["shape"]), np.dtype(detail["dtype"]).name)


@RUNTIMES.register
class OnnxRuntime(Runtime):
    name = "onnxruntime"
    suffix = ".onnx"
    module = "onnxruntime"
    distribution = "onnxruntime"

    def open(self, path: Path, threads: int, compute_units: str = "all") -> Session:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # idle workers spin by default: in an interleaved A/B run they would steal the other model's cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        spec = session.get_inputs()[0]
        shape = tuple(d if isinstance(d, int) else 1 for d in spec.shape)  # a dynamic batch runs as one
        feed = {spec.name: _random(shape, np.float32)}
        return Session(lambda: session.run(None, feed), shape, "float32")


@RUNTIMES.register
class ExecuTorch(Runtime):
    """ExecuTorch's runtime with its XNNPACK delegate.

    Its thread pool is one per process and sized at start-up (to the core count); resizing it once
    programs are loaded crashes the process (`_unsafe_reset_threadpool` means it), so only that thread
    count is timed and other counts are reported as not timed.
    """

    name = "executorch"
    suffix = ".pte"
    module = "executorch"
    distribution = "executorch"

    def open(self, path: Path, threads: int, compute_units: str = "all") -> Session:
        import torch
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime as ETRuntime

        pool = portable_lib._threadpool_get_thread_count()
        if threads != pool:
            raise CannotRun(f"its thread pool is fixed at {pool} per process; time it with --threads {pool}")
        method = ETRuntime.get().load_program(str(path)).load_method("forward")
        meta = method.metadata.input_tensor_meta(0)
        shape = tuple(meta.sizes())
        inputs = [torch.from_numpy(_random(shape, np.float32))]
        return Session(lambda: method.execute(inputs), shape, "float32")


@RUNTIMES.register
class TorchRuntime(Runtime):
    """Plain PyTorch eager on a `torch.export` file (`model.pt2`): the reference, not a phone runtime."""

    name = "torch"
    suffix = ".pt2"
    module = "torch"
    distribution = "torch"

    def open(self, path: Path, threads: int, compute_units: str = "all") -> Session:
        import torch

        from ..errors import UserError
        from ..safe_pt2 import load_exported

        try:
            module = load_exported(path).module()  # refuses files that would run code when loaded
        except UserError as exc:
            raise CannotRun(str(exc)) from exc
        placeholder = next(n for n in module.graph.nodes if n.op == "placeholder" and "val" in n.meta)
        shape = tuple(int(s) for s in placeholder.meta["val"].shape)
        example = torch.from_numpy(_random(shape, np.float32))

        def run():
            torch.set_num_threads(threads)  # process-wide: set for this model's every run
            with torch.inference_mode():
                return module(example)

        return Session(run, shape, "float32")


@RUNTIMES.register
class CoreML(Runtime):
    """Core ML predictions of an `.mlpackage` (macOS only): `compute_units` cpu (CPU only) or all (+GPU/ANE).

    Core ML schedules its own threads, so the thread count is recorded but does not apply.
    """

    name = "coreml"
    suffix = ".mlpackage"
    module = "coremltools"
    distribution = "coremltools"

    def open(self, path: Path, threads: int, compute_units: str = "all") -> Session:
        import platform

        if platform.system() != "Darwin":
            raise CannotRun("Core ML predicts only on macOS")
        import coremltools as ct
        from PIL import Image

        units = {"cpu": ct.ComputeUnit.CPU_ONLY, "all": ct.ComputeUnit.ALL}[compute_units]
        model = ct.models.MLModel(str(path), compute_units=units)
        size = int(model.user_defined_metadata.get("input_size", "224"))
        pixels = np.random.default_rng(0).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        feed = {"image": Image.fromarray(pixels)}
        return Session(lambda: model.predict(feed), (1, 3, size, size), f"image ({compute_units} compute units)")
