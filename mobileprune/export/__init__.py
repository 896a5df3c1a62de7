"""App-ready model files: one module per format (`*_format.py`, registered in `FORMATS`), `convert.py`
writes and checks them all into one bundle."""

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
