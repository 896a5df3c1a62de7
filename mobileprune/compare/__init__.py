"""`compare`: what pruning broke, class by class and image by image (per-class damage, PIE)."""

from .comparison import Comparison, check_compare_dir, compare_models, write_comparison
from .damage import ClassDamage, modal_prediction, per_class, pruning_identified_exemplars
from .predictors import Predictor, open_predictor

__all__ = [
    "ClassDamage",
    "Comparison",
    "Predictor",
    "check_compare_dir",
    "compare_models",
    "modal_prediction",
    "open_predictor",
    "per_class",
    "pruning_identified_exemplars",
    "write_comparison",
]
