"""Does pruning make the app faster? MobileNetV1-224 and V2-224, original vs pruned, on LiteRT and ONNX Runtime.

For each architecture: shrink (no data: one-shot, data-free sensitivity proxy) to `--target 0.84` of the
parameters and to `--target 0.5 --by macs`, convert original and pruned to .tflite and .onnx, and time all
three side by side (interleaved) at 1 and 2 threads. The benchmark's own noise: the original against
itself (same file, two sessions) the same way. Speed does not depend on the weights' values: V2 uses the
shared ImageNet weights, V1 random ones.

Writes benchmarks/results/bench_speedup.json and bench_speedup_<arch>.png. Run on an otherwise idle
machine: `.venv/bin/python benchmarks/bench_speedup.py`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from protocol import WEIGHTS
from rich.console import Console

from mobileprune import ShrinkConfig, load_model, save_output, shrink
from mobileprune.bench import BenchConfig, bench, open_bench_model
from mobileprune.export import convert
from mobileprune.progress import Progress
from mobileprune.reporting.console import print_bench
from mobileprune.reporting.plots import plot_fps
from mobileprune.reporting.provenance import versions

HERE = Path(__file__).resolve().parent
CHECKPOINTS = {"mobilenet_v1": None, "mobilenet_v2": WEIGHTS}
PRUNINGS = {"params-0.84": ShrinkConfig(target=0.84), "macs-0.5": ShrinkConfig(target=0.5, by="macs")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--archs", default="mobilenet_v1,mobilenet_v2")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--min-seconds", type=float, default=3.0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "bench_speedup.json")
    args = ap.parse_args()
    console = Console()
    progress = Progress(console)
    work = Path(tempfile.mkdtemp(prefix="mobileprune-speed-"))
    config = BenchConfig(None, [int(t) for t in args.threads.split(",")], args.runs, args.min_seconds, 10)
    runs = []
    for arch in args.archs.split(","):
        checkpoint = CHECKPOINTS[arch]
        source = str(checkpoint) if checkpoint else arch
        folders = {}
        original = load_model(source, arch=arch if checkpoint else None)
        convert(original, ["tflite", "onnx"], work / arch / "original", progress=progress)
        folders["original"] = work / arch / "original"
        reports = {}
        for name, shrink_config in PRUNINGS.items():
            torch.manual_seed(0)
            started = time.time()
            result = shrink(load_model(source, arch=arch if checkpoint else None), shrink_config)
            save_output(result, work / arch / f"shrunk-{name}")
            reports[name] = {**result.report["ratios"], "shrink_s": round(time.time() - started, 1)}
            progress.log(f"{arch} {name}: ratios {result.report['ratios']}")
            convert(load_model(work / arch / f"shrunk-{name}"), ["tflite", "onnx"], work / arch / name)
            folders[name] = work / arch / name
        models = [open_bench_model(path, label) for label, path in folders.items()]
        measured = bench(models, config, progress)
        print_bench(measured, console)
        noise = bench(
            [open_bench_model(folders["original"], "original A"), open_bench_model(folders["original"], "original B")],
            config,
            progress,
        )
        print_bench(noise, console)
        png = plot_fps(measured, args.out.parent / f"bench_speedup_{arch}.png")
        runs.append(
            {
                "arch": arch,
                "weights": "shared ImageNet" if checkpoint else "random",
                "pruned": reports,
                "bench": measured.to_json(),
                "noise_same_model_twice": noise.to_json()["speedups"],
                "plot": png.name,
            }
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "original vs pruned MobileNets, interleaved, batch 1, LiteRT (XNNPACK) and ONNX Runtime",
                "config": config.__dict__,
                "runs": runs,
                "versions": versions(),
            },
            indent=2,
        )
        + "\n"
    )
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
