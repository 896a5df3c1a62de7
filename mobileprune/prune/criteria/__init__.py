"""Which channels of a group go first: one criterion per module, registered in `CRITERIA`."""

from .base import CRITERIA, CalibrationData, Criterion

__all__ = ["CRITERIA", "CalibrationData", "Criterion"]
