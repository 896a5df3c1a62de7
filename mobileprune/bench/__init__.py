"""`bench`: FPS and latency of model files on the runtimes phones use, models compared side by side.

`models.py` (what an argument names) → `runtimes/` (one engine per file) → `measure.py` (interleaved
timing, speed-ups) → `stats.py`; `android.py` runs the same on a phone over adb.
"""

from .android import bench_on_phone
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
    "bench_on_phone",
    "open_bench_model",
]
