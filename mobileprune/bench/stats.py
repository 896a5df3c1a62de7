"""Latency statistics of one model on one runtime: what a benchmark table reports."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    runs: int
    mean_ms: float
    median_ms: float
    p90_ms: float | None  # None where a phone tool does not print it
    p99_ms: float | None
    min_ms: float | None
    std_ms: float | None

    @property
    def fps(self) -> float:
        """Frames per second from the median, which one slow run (a context switch) cannot drag down."""
        return 1000.0 / self.median_ms

    @classmethod
    def from_samples(cls, samples_ms) -> LatencyStats:
        x = np.asarray(samples_ms, dtype=np.float64)
        if x.size == 0:
            raise ValueError("no timings to summarise")
        return cls(
            runs=int(x.size),
            mean_ms=float(x.mean()),
            median_ms=float(np.median(x)),
            p90_ms=float(np.percentile(x, 90)),
            p99_ms=float(np.percentile(x, 99)),
            min_ms=float(x.min()),
            std_ms=float(x.std(ddof=1)) if x.size > 1 else 0.0,
        )

    def to_json(self) -> dict:
        fields = ("mean_ms", "median_ms", "p90_ms", "p99_ms", "min_ms", "std_ms")
        out = {"runs": self.runs, **{f: _round(getattr(self, f)) for f in fields}}
        return {**out, "fps": round(self.fps, 2)}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
