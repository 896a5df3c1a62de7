"""App-ready model files: one module per format (`*_format.py`, registered in `FORMATS`), `convert.py`
writes and checks them all into one bundle."""

from .app_input import AppInput, parse_layout, parse_normalize
from .base import FORMATS, Exporter, ExportRequest, ModelAbout
from .convert import FormatResult, convert, parse_formats, parse_precisions

__all__ = [
    "FORMATS",
    "AppInput",
    "ModelAbout",
    "parse_normalize",
    "Exporter",
    "ExportRequest",
    "FormatResult",
    "convert",
    "parse_formats",
    "parse_layout",
    "parse_precisions",
]
