"""The inference engines `bench` times, one module each (see `base.py`)."""

from .base import RUNTIMES, CannotRun, Runtime, Session, runtime_for

__all__ = ["RUNTIMES", "CannotRun", "Runtime", "Session", "runtime_for"]
