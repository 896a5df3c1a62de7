"""mobileprune: structured pruning, retraining and export of CNNs for phones.

The Python API follows the data path:
    loaded = mobileprune.load_model("mobilenet_v2.pth", arch="mobilenet_v2")
    result = mobileprune.shrink(loaded, mobileprune.ShrinkConfig(target=0.84))
    mobileprune.save_output(result, "shrunk/")
    again = mobileprune.load("shrunk/")
"""

__version__ = "0.1.0"

from .errors import UserError  # noqa: E402
from .loading import LoadedModel, load_model  # noqa: E402
from .output import load, save_output  # noqa: E402
from .shrink import ShrinkConfig, ShrinkResult, shrink  # noqa: E402

__all__ = [
    "UserError",
    "LoadedModel",
    "load_model",
    "load",
    "save_output",
    "ShrinkConfig",
    "ShrinkResult",
    "shrink",
    "__version__",
]
