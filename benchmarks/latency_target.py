"""`--speedup`: does a latency-targeted shrink run as fast as asked, measured, and is it a better model?

1. MobileNetV1, V2 (the shared ImageNet weights) and V3-Large at 224 px, `--speedup 2` and `1.5` on
   LiteRT fp32, 1 thread (data-free allocation): the speed-up measured afterwards in a separate interleaved
   run against the unpruned model, with the noise (the unpruned model against itself).
2. MobileNetV2 with the 500 odd-class photos (sensitivity allocation, reconstruction), `--speedup 1.5` and
   `2`, allocated by damage per predicted ms and by damage per MAC (`--allocate-per`), each brought to the
   measured target; the default (`auto`) keeps the one with less predicted damage. All models timed in one
   interleaved run and scored on the 500 held-out even-class photos.
3. The latency model's error on random pruned variants of V2 (predicted vs measured share of the unpruned
   latency), channels removed in multiples of 8 (the default `--round-to`) and of 16; the profile PNG.

4. `--round-to auto` on LiteRT: which channel multiple the runtime is fastest at, measured; when it is not
   the default 8, what it buys: part 2's `--speedup 2` (default allocation) with that multiple and with 8,
   timed together (three interleaved calls) and scored on the held-out photos.

Writes benchmarks/results/latency_target.json, latency_target.png and profile_mobilenet_v2_litert_fp32.png.
Run: `make bench-latency` (about 45 min on 2 cores; tables are cached in benchmarks/results/.latency-cache).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from protocol import WEIGHTS, build_split

from mobileprune import ShrinkConfig, load_model, shrink
from mobileprune.api import open_shrink_data
from mobileprune.atomic import write_json
from mobileprune.bench.latency_profile import plot_profile, profile_latency
from mobileprune.bench.probe import RuntimeProbe
from mobileprune.prune.cost import COST_MODELS, count_cost
from mobileprune.prune.graph import PruningGraph
from mobileprune.reporting.plots import pyplot, save_figure
from mobileprune.reporting.provenance import machine_facts, versions
from mobileprune.train.data import make_loader
from mobileprune.train.loop import evaluate

HERE = Path(__file__).resolve().parent
CACHE = HERE / "results" / ".latency-cache"
ARCHS = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--speedups", default="2,1.5")
    ap.add_argument("--variants", type=int, default=10)
    ap.add_argument("--parts", default="speed,accuracy,model,round_to", help="which parts to run")
    ap.add_argument("--merge", action="store_true", help="update the existing results file (rows by arch and ask)")
    ap.add_argument("--split", type=Path, help="an existing imagenet_split.py output (default: build one)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "latency_target.json")
    args = ap.parse_args()
    options = {"runtime": "litert", "threads": 1, "precision": "fp32", "cache_dir": str(CACHE)}
    results: dict = {"options": {k: v for k, v in options.items() if k != "cache_dir"}, "speedups": []}
    if args.merge:
        results = json.loads(args.out.read_text())
    parts = args.parts.split(",")
    probe = RuntimeProbe("litert", 1, "fp32", runs=100, min_seconds=3.0)  # the independent check: longer runs
    for arch in args.archs.split(",") if "speed" in parts else ():
        for speedup in (float(s) for s in args.speedups.split(",")):
            loaded = _load(arch)
            original = _load(arch).model.eval()
            started = time.time()
            config = ShrinkConfig(target=1 / speedup, by="latency", schedule="oneshot", cost_options=options)
            report = shrink(loaded, config).report
            row = _speed_row(probe, original, loaded.model, report, speedup)
            row.update(arch=arch, wall_s=round(time.time() - started, 1))
            same = [r for r in results["speedups"] if (r["arch"], r["asked_speedup"]) == (arch, speedup)]
            results["speedups"] = (
                [row if r in same else r for r in results["speedups"]] if same else [*results["speedups"], row]
            )
            print(row, flush=True)
            _write(args.out, results)
    if "accuracy" in parts:  # with --merge, speed-ups not asked this time keep their rows (each says its version)
        results["accuracy"] = {**(results.get("accuracy", {}) if args.merge else {}), **_accuracy(args, options, probe)}
        _write(args.out, results)
    if "round_to" in parts:
        results["round_to_auto"] = _round_to(args, options, probe)
        print(results["round_to_auto"], flush=True)
        _write(args.out, results)
    if "model" not in parts:
        return
    loaded = _load("mobilenet_v2")
    profile = profile_latency(loaded, options, args.variants)
    results["latency_model"] = profile.to_json()
    plot_profile(profile, HERE / "results" / "profile_mobilenet_v2_litert_fp32.png")
    print(f"latency model: median error {results['latency_model']['median_error']}", flush=True)
    coarse = profile_latency(_load("mobilenet_v2"), options, args.variants, round_to=16)
    results["latency_model_round_to_16"] = {k: v for k, v in coarse.to_json().items() if k != "layers"}
    print(f"latency model, variants in multiples of 16: median error {coarse.to_json()['median_error']}", flush=True)
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
    """V2 at each speed-up, allocated per ms and per MAC (both to the measured target): speed and held-out top-1."""
    split = build_split(args.split)
    spec = _load("mobilenet_v2").spec
    data, heldout = open_shrink_data(spec, split / "unlabeled", split / "heldout", distill=True)
    loader = make_loader(heldout, 50, False, workers=1)
    original = _load("mobilenet_v2").model.eval()
    out: dict = {"unpruned_top1": evaluate(original, loader).top1}
    models = {}
    for speedup in (float(s) for s in args.speedups.split(",")):
        row: dict = {}
        for per in ("auto", "other"):
            if per == "other":
                per = "macs" if row["auto_kept"] == "ms" else "ms"
            loaded = _load("mobilenet_v2")
            config = ShrinkConfig(
                target=1 / speedup,
                by="latency",
                schedule="oneshot",
                distill=True,
                cost_options={**options, "allocate_per": per},
            )
            started = time.time()
            report = shrink(loaded, config, data).report
            entry = report.latency["rounds"][0]
            kept = entry["allocated_per"]
            if per == "auto":
                row["auto_kept"], row["candidates"] = kept, entry.get("candidates", {})
            row[kept] = {
                "top1": evaluate(loaded.model.eval(), loader).top1,
                "mac_ratio": report.ratios["macs"],
                "measured_inside_shrink": report.achieved,
                "wall_s": round(time.time() - started, 1),
            }
            models[(speedup, kept)] = loaded.model.eval()
            print(speedup, kept, row[kept], flush=True)
        out[f"{speedup:g}x"] = row
    example = torch.randn(1, 3, 224, 224)
    names = list(models)
    times = probe.time([original, original, *models.values()], example)
    base = (times[0] + times[1]) / 2
    out["noise"] = round(abs(times[0] / times[1] - 1), 4)
    for (speedup, per), ms in zip(names, times[2:], strict=True):
        out[f"{speedup:g}x"][per]["measured_speedup"] = round(base / ms, 4)
        out[f"{speedup:g}x"]["noise"] = out["noise"]
        out[f"{speedup:g}x"]["mobileprune"] = versions()["mobileprune"]
    return out


def _round_to(args, options: dict, probe) -> dict:
    """`--round-to auto` on the real runtime: does LiteRT prefer a channel multiple for MobileNetV2's layers,
    and, if it is not 8, is a 2x model rounded to it better than one rounded to 8 at the same measured speed?"""
    loaded = _load("mobilenet_v2")
    example = torch.randn(1, 3, 224, 224)
    graph = PruningGraph(loaded.model.eval(), example, [loaded.model.classifier])
    offered = {"model": loaded.model, "example": example, "groups": graph.groups}
    multiple, why = COST_MODELS.create("latency", offered=offered, **options).preferred_multiple()
    out: dict = {"arch": "mobilenet_v2", "multiple": multiple, "why": why}
    print(out, flush=True)
    if multiple == 8:
        return out
    split = build_split(args.split)
    data, heldout = open_shrink_data(loaded.spec, split / "unlabeled", split / "heldout", distill=True)
    loader = make_loader(heldout, 50, False, workers=1)
    models = {}
    for round_to in (multiple, 8):
        pruned = _load("mobilenet_v2")
        config = ShrinkConfig(
            target=0.5, by="latency", schedule="oneshot", distill=True, round_to=round_to, cost_options=options
        )
        started = time.time()
        report = shrink(pruned, config, data).report
        out[f"2x, round_to {round_to}"] = {
            "top1": evaluate(pruned.model.eval(), loader).top1,
            "mac_ratio": report.ratios["macs"],
            "measured_inside_shrink": report.achieved,
            "allocated_per": report.latency["rounds"][-1]["allocated_per"],
            "wall_s": round(time.time() - started, 1),
        }
        models[round_to] = pruned.model.eval()
        print(round_to, out[f"2x, round_to {round_to}"], flush=True)
    original = _load("mobilenet_v2").model.eval()
    calls = [probe.time([original, *models.values()], example, careful=True) for _ in range(3)]
    for i, round_to in enumerate(models, start=1):
        ratios = sorted(call[i] / call[0] for call in calls)
        out[f"2x, round_to {round_to}"].update(
            measured_ratio=round(ratios[1], 4), measured_calls=[round(r, 4) for r in ratios]
        )
    return out


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
