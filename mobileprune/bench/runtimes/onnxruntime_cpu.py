"""ONNX Runtime on the CPU execution provider, for `.onnx` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import RUNTIMES, Runtime, Session, random_input


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
        feed = {spec.name: random_input(shape, np.float32)}
        return Session(lambda: session.run(None, feed), shape, "float32")
