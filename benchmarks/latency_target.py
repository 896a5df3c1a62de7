"""`--speedup`: does a latency-targeted shrink run as fast as asked, measured, and is it a better model?

1. MobileNetV1, V2 (the shared ImageNet weights) and V3-Large at 224 px, `--speedup 2` and `1.5` on
   LiteRT fp32, 1 thread (data-free allocation): the speed-up measured afterwards in a separate interleaved
   run against the unpruned model, with the noise (the unpruned model against itself).
2. MobileNetV2 with the 500 odd-class photos (sensitivity allocation, reconstruction): `--speedup 2`
   against `--by macs` at the MAC ratio the latency-pruned model ended with; both timed interleaved and
   both scored on the 500 held-out even-class photos.
3. The latency model's error on random pruned variants of V2 (predicted vs measured), and the profile PNG.

Writes benchmarks/results/latency_target.json, latency_target.png and profile_mobilenet_v2_litert_fp32.png.
Run: `make bench-latency` (about 45 min on 2 cores; tables are cached in benchmarks/results/.latency-cache).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mobileprune import ShrinkConfig, load_model, shrink
from mobileprune.api import open_shrink_data
from mobileprune.atomic import write_json
from mobileprune.bench.latency_profile import plot_profile, profile_latency
from mobileprune.bench.probe import RuntimeProbe
from mobileprune.prune.cost import count_cost
from mobileprune.reporting.plots import pyplot, save_figure
from mobileprune.reporting.provenance import machine_facts, versions
from mobileprune.train.data import make_loader
from mobileprune.train.loop import evaluate

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_imagenet.pth"
CACHE = HERE / "results" / ".latency-cache"
ARCHS = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--speedups", default="2,1.5")
    ap.add_argument("--variants", type=int, default=10)
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--split", type=Path, help="an existing imagenet_split.py output (default: build one)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "latency_target.json")
    args = ap.parse_args()
    options = {"runtime": "litert", "threads": 1, "precision": "fp32", "cache_dir": str(CACHE)}
    results: dict = {"options": {k: v for k, v in options.items() if k != "cache_dir"}, "speedups": []}
    probe = RuntimeProbe("litert", 1, "fp32", runs=100, min_seconds=3.0)  # the independent check: longer runs
    for arch in args.archs.split(","):
        for speedup in (float(s) for s in args.speedups.split(",")):
            loaded = _load(arch)
            original = _load(arch).model.eval()
            started = time.time()
            config = ShrinkConfig(target=1 / speedup, by="latency", schedule="oneshot", cost_options=options)
            report = shrink(loaded, config).report
            row = _speed_row(probe, original, loaded.model, report, speedup)
            row.update(arch=arch, wall_s=round(time.time() - started, 1))
            results["speedups"].append(row)
            print(row, flush=True)
            _write(args.out, results)
    if not args.skip_accuracy:
        results["accuracy"] = _accuracy(args, options, probe)
        _write(args.out, results)
    loaded = _load("mobilenet_v2")
    profile = profile_latency(loaded, options, args.variants)
    results["latency_model"] = profile.to_json()
    plot_profile(profile, HERE / "results" / "profile_mobilenet_v2_litert_fp32.png")
    print(f"latency model: median error {results['latency_model']['median_error']}", flush=True)
    _write(args.out, results)


def _load(arch: str):
    torch.manual_seed(0)
    if arch == "mobilenet_v2":
        return load_model(WEIGHTS, arch="mobilenet_v2")
    return load_model(arch)


def _speed_row(probe, original, pruned, report, speedup: float) -> dict:
    """The speed-up measured afterwards, interleaved: unpruned, unpruned again (the noise), pruned."""
    example = torch.randn(1, 3, 224, 224)
    first, second, fast = probe.time([original, original, pruned], example)
    before, after = count_cost(original, example), count_cost(pruned, example)
    checks = report.latency["rounds"][0]["checks"]
    return {
        "asked_speedup": speedup,
        "measured_speedup": round((first + second) / 2 / fast, 4),
        "noise": round(abs(first / second - 1), 4),
        "within_5_percent": abs(fast / ((first + second) / 2) * speedup - 1) <= 0.05,
        "unpruned_ms": round((first + second) / 2, 3),
        "pruned_ms": round(fast, 3),
        "mac_ratio": round(after.macs / before.macs, 4),
        "params_ratio": round(after.params / before.params, 4),
        "checks_during_shrink": checks,
        "latency_model": {k: v for k, v in report.latency.items() if k != "rounds"},
    }


def _accuracy(args, options, probe) -> dict:
    """V2 at 2x by latency vs by MACs at the same MAC ratio: speed and held-out top-1 of both."""
    split = args.split or _build_split()
    spec = _load("mobilenet_v2").spec
    data, heldout = open_shrink_data(spec, split / "unlabeled", split / "heldout", distill=True)
    loader = make_loader(heldout, 50, False, workers=1)
    out = {}
    common = {"schedule": "oneshot", "distill": True}
    latency = _load("mobilenet_v2")
    report = shrink(latency, ShrinkConfig(target=0.5, by="latency", cost_options=options, **common), data).report
    macs = _load("mobilenet_v2")
    shrink(macs, ShrinkConfig(target=report.ratios["macs"], by="macs", **common), data)
    original = _load("mobilenet_v2").model.eval()
    example = torch.randn(1, 3, 224, 224)
    base, again, by_latency, by_macs = probe.time([original, original, latency.model, macs.model], example)
    for name, model, ms in (("by_latency", latency.model, by_latency), ("by_macs", macs.model, by_macs)):
        cost = count_cost(model, example)
        out[name] = {
            "top1": evaluate(model.eval(), loader).top1,
            "measured_speedup": round((base + again) / 2 / ms, 4),
            "mac_ratio": round(cost.macs / count_cost(original, example).macs, 4),
        }
        print(name, out[name], flush=True)
    out["noise"] = round(abs(base / again - 1), 4)
    out["unpruned_top1"] = evaluate(original, loader).top1
    return out


def _build_split() -> Path:
    split = Path(tempfile.mkdtemp(prefix="mobileprune-split-"))
    subprocess.run([sys.executable, str(SHARED / "protocols" / "imagenet_split.py"), str(split)], check=True)
    return split


def _write(path: Path, results: dict) -> None:
    results.update(versions=versions(), machine=machine_facts())
    write_json(path, results)
    rows = results["speedups"]
    if not rows:
        return
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    labels = [f"{r['arch']}\n{r['asked_speedup']:g}x" for r in rows]
    ax.bar(range(len(rows)), [r["measured_speedup"] for r in rows], 0.6, label="measured afterwards")
    ax.scatter(range(len(rows)), [r["asked_speedup"] for r in rows], color="k", marker="_", s=600, label="asked")
    for i, r in enumerate(rows):
        ax.errorbar(i, r["asked_speedup"], yerr=0.05 * r["asked_speedup"], color="k", capsize=6, lw=1)
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel("speed-up on LiteRT fp32, 1 thread")
    ax.set_title("--speedup: asked (±5%) and measured, interleaved against the unpruned model")
    ax.legend(fontsize=8)
    save_figure(fig, path.with_suffix(".png"))


if __name__ == "__main__":
    main()
