"""Checkpoints in, shrink folders out: every file mobileprune reads or writes a model from or to.

`load_model` (`loading.py`) is the one entry point: zoo names, state dicts and pickled modules
(`checkpoints.py`), and shrink output folders (`shrink_folder.py`, pickle-free). `.pt2` files are only
opened through `safe_pt2.py`.
"""

from .loaded_model import LoadedModel
from .loading import load_model
from .shrink_folder import OUTPUT_FILES, check_output_dir, load, load_output, read_report, save_output

__all__ = [
    "OUTPUT_FILES",
    "LoadedModel",
    "check_output_dir",
    "load",
    "load_model",
    "load_output",
    "read_report",
    "save_output",
]
