"""How weights are chosen and zeroed: one module per method, registered in `METHODS` (`--method NAME`)."""

from .base import METHODS, SparsifyMethod

__all__ = ["METHODS", "SparsifyMethod"]
