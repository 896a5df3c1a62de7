"""App-ready model files: one module per format, all registered in `FORMATS`."""

from . import coreml_format, executorch_format, onnx_format, tflite_format  # noqa: F401  (register formats)
from .base import FORMATS, Exporter, ExportRequest
from .convert import FormatResult, convert, parse_formats, parse_layout, parse_precisions

__all__ = [
    "FORMATS",
    "Exporter",
    "ExportRequest",
    "FormatResult",
    "convert",
    "parse_formats",
    "parse_layout",
    "parse_precisions",
]
