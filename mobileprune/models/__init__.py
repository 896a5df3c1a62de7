"""Networks by name: the spec that travels with a model (`spec.py`), building it (`build.py`), and fixes
that let the dependency graph trace architectures it otherwise could not (`tracing_fixes.py`)."""

from .build import build_model, classifier_module
from .spec import IMAGENET_MEAN, IMAGENET_STD, ZOO, ModelSpec, resolve_spec

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ZOO", "ModelSpec", "build_model", "classifier_module", "resolve_spec"]
