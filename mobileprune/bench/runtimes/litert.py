"""LiteRT (TFLite) with its XNNPACK CPU delegate: what an Android app runs a `.tflite` with."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import RUNTIMES, Runtime, Session, random_input


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
        interpreter.set_tensor(detail["index"], random_input(tuple(detail["shape"]), detail["dtype"]))
        return Session(interpreter.invoke, tuple(int(s) for s in detail["shape"]), np.dtype(detail["dtype"]).name)
