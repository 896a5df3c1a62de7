"""mobileprune: structured pruning, retraining, export and on-device benchmarking of CNNs for phones.

The Python API follows the data path (see `api.py`):
    loaded = mobileprune.load_model("mobilenet_v2.pth", arch="mobilenet_v2")
    result = mobileprune.shrink(loaded, mobileprune.ShrinkConfig(target=0.84))
    mobileprune.save_output(result, "shrunk/")
    again = mobileprune.load("shrunk/")
"""

from . import api
from .api import *  # noqa: F403  (the API is api.py's __all__)
from .errors import UserError
from .version import __version__

__all__ = [*api.__all__, "UserError", "__version__"]
