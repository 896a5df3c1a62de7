"""Structured pruning, in the order it happens: `graph` (which channels go together) → `cost` (what a
target counts) → `allocate` (how many per group) → `criteria` (which ones) → `schedules` (when, with
retraining) → `plan` (the replayable record) → `pipeline` (`shrink`, phase by phase) → `report`."""
