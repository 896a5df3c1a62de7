"""How many channels each group loses: one engine (`engine.py`), one module per strategy."""

from .engine import ALLOCATIONS, TOLERANCE, Allocation, AllocationInputs, AllocationStrategy, allocate, allowed_removals

__all__ = [
    "ALLOCATIONS",
    "TOLERANCE",
    "Allocation",
    "AllocationInputs",
    "AllocationStrategy",
    "allocate",
    "allowed_removals",
]
