"""`bench`: FPS and latency of model files on the runtimes phones use, models compared side by side."""

from .measure import BenchConfig, BenchResult, Measurement, SpeedUp, bench
from .models import BenchModel, open_bench_model
from .stats import LatencyStats

__all__ = [
    "BenchConfig",
    "BenchModel",
    "BenchResult",
    "LatencyStats",
    "Measurement",
    "SpeedUp",
    "bench",
    "open_bench_model",
]
