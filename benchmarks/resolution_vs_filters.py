"""Input resolution against filter pruning at 2x: fewer pixels, fewer filters, or both, on the held-out protocol.

A convolutional network's MACs scale with its input's pixels, and a network with global pooling runs at
any size, so running the shared ImageNet MobileNetV2 at 160 px instead of 224 is a "prune" that removes
half the MACs without touching a weight. Width scaling is the baseline every pruning paper must beat;
resolution is the other one. Every row is held to a share of the *224-px* model's MACs:

- resolution only: the unpruned model at 224, 208, 192, 176, 160, 144 and 128 px (`shrink --input-size N
  --target 1.0`, nothing removed);
- filters only: `shrink --by macs --target 0.5` (and 0.7) at 224 px, the CLI's one-shot default
  (4 rounds of sensitivity allocation, reconstruction) on the 500 odd photos;
- both: `--input-size N` with `--target` chosen so that N px and the kept filters together keep 0.5 (or
  0.7) of the 224-px MACs; allocation, reconstruction and the teacher all at N px.

Top-1 on the 500 held-out even-class photos, each model at its own input size (photos resized and centre
cropped to it, as the app's image pipeline would), with paired counts (McNemar) against the resolution-only
row nearest in MACs; then every folder's app-ready fp32 `.tflite` (`--export tflite`) is timed interleaved
on LiteRT, one thread (`mobileprune bench`; the unpruned 224-px model is the baseline, noise = it against
itself).

Writes benchmarks/results/resolution_vs_filters.{json,png}. Run:
`python benchmarks/resolution_vs_filters.py [--split S] [--reuse]` (S from ../shared/protocols/imagenet_split.py;
made afresh without it), or `make bench-resolution`. Run on an otherwise idle machine (it times).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch
from protocol import WEIGHTS, build_split, paired

from mobileprune import load_model
from mobileprune.api import open_image_folder
from mobileprune.artifacts.shrink_folder import load_output
from mobileprune.atomic import write_json
from mobileprune.models.labels import class_ids
from mobileprune.prune.cost import count_cost
from mobileprune.reporting.plots import pyplot, save_figure
from mobileprune.reporting.provenance import machine_facts, versions
from mobileprune.train.data import make_loader

HERE = Path(__file__).resolve().parent
SIZES = (224, 208, 192, 176, 160, 144, 128)
BOTH = {0.5: (224, 192, 176, 160), 0.7: (224, 208, 192)}  # goal (of the 224-px MACs) -> input sizes
ONE_SHOT = ["--by", "macs", "--schedule", "oneshot", "--epochs", "0"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", type=Path, help="imagenet_split.py output (default: made afresh)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/mobileprune-resolution"))
    ap.add_argument("--reuse", action="store_true", help="keep folders made with the same command")
    args = ap.parse_args()
    args.split = build_split(args.split)
    macs = {size: _macs(size) for size in SIZES}
    runs: dict[str, dict] = {}
    for size in SIZES:
        runs[f"{size}px"] = {"size": size, "goal": None, "options": ["--target", "1.0", "--by", "macs"]}
    for goal, sizes in BOTH.items():
        for size in sizes:
            target = round(goal * macs[224] / macs[size], 4)
            name = f"{size}px_filters{goal}" if size != 224 else f"filters{goal}"
            data = ["--data", str(args.split / "unlabeled"), "--distill"]
            runs[name] = {"size": size, "goal": goal, "options": [*ONE_SHOT, "--target", str(target), *data]}
    rows: dict[str, dict] = {}
    right: dict[str, list[bool]] = {}
    for name, run in runs.items():
        folder = args.work / name
        command = [sys.executable, "-m", "mobileprune", "shrink", str(WEIGHTS), "--arch", "mobilenet_v2"]
        command += ["--input-size", str(run["size"]), *run["options"], "--export", "tflite"]
        command += ["--out", str(folder), "--force", "--quiet"]
        done = folder / "report.json"
        same = done.exists() and json.loads(done.read_text()).get("command") == "mobileprune " + shlex.join(command[3:])
        if args.reuse and same:  # made by an earlier run of this script with the same command
            wall = json.loads(done.read_text())["timings_s"].get("total_s")
        else:
            started = time.time()
            subprocess.run(command, check=True)
            wall = round(time.time() - started, 1)
        right[name] = _right_per_photo(folder, args.split / "heldout")
        report = json.loads((folder / "report.json").read_text())
        rows[name] = {
            "input_size": run["size"],
            "goal": run["goal"],
            "macs_of_224px": round(report["after"]["macs"] / macs[224], 4),
            "params_kept": report["ratios"]["params"],
            "heldout_top1": sum(right[name]) / len(right[name]),
            "images": len(right[name]),
            "wall_s": wall,
            "command": report.get("command"),
        }
        print(name, rows[name], flush=True)
    for name, row in rows.items():  # paired against the resolution-only row with the nearest MACs
        nearest = min((n for n in rows if rows[n]["goal"] is None and n != name),
                      key=lambda n: abs(rows[n]["macs_of_224px"] - row["macs_of_224px"]))  # fmt: skip
        only_it, only_this, z = paired(right[nearest], right[name])
        row["paired_with"] = {"row": nearest, "right_only_there": only_it, "right_only_here": only_this, "z": z}
    timing = args.work / "bench.json"
    folders = [str(args.work / "224px"), *(str(args.work / n) for n in rows)]  # 224px twice: the noise
    bench = [sys.executable, "-m", "mobileprune", "bench", *folders, "--runtime", "litert", "--quiet"]
    subprocess.run([*bench, "--json", str(timing)], check=True)
    noise = _add_speed(rows, json.loads(timing.read_text()))
    out = HERE / "results" / "resolution_vs_filters.json"
    result = {
        "what": __doc__.splitlines()[0],
        "protocol": "shared ImageNet MobileNetV2; 500 odd-class photos for allocation and reconstruction, "
        "500 even-class photos only for top-1, each model at its own input size",
        "unpruned_224px_macs": macs[224],
        "rows": rows,
        "speed_noise": noise,
        "bench": json.loads(timing.read_text()),
        "versions": versions(),
        "machine": machine_facts(),
    }
    write_json(out, result)
    _plot(rows, out.with_suffix(".png"))


def _macs(size: int) -> int:
    model = load_model(str(WEIGHTS), arch="mobilenet_v2", input_size=size).model
    return count_cost(model, torch.randn(1, 3, size, size)).macs


@torch.no_grad()
def _right_per_photo(folder: Path, heldout: Path) -> list[bool]:
    """Whether each held-out photo's top-1 is its label, at the folder's input size (a fixed photo order)."""
    loaded = load_output(folder)
    spec = loaded.spec
    images = open_image_folder(heldout, spec.input_size, spec.mean, spec.std, classes=class_ids(spec))
    model, right = loaded.model.eval(), []
    for batch in make_loader(images, 50, False, workers=1):
        right += (model(batch.images).argmax(1) == batch.labels).tolist()
    return right


def _add_speed(rows: dict[str, dict], bench: dict) -> float | None:
    """Each row's speed-up over the unpruned 224-px model (ratio of interleaved medians, one bench run);
    returns the noise: the 224-px model timed against itself, |speed-up - 1|."""
    speedups = {Path(s["model"]).name: s["speedup"] for s in bench["speedups"] if s["runtime"] == "litert"}
    for name, row in rows.items():
        row["litert_speedup"] = speedups.get(name)
    itself = speedups.get("224px #2")
    return round(abs(itself - 1), 4) if itself is not None else None


def _plot(rows: dict[str, dict], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    alone = sorted((r for r in rows.values() if r["goal"] is None), key=lambda r: r["macs_of_224px"])
    ax.plot([r["macs_of_224px"] for r in alone], [r["heldout_top1"] for r in alone], "o-", label="resolution only")
    for r in alone:
        ax.annotate(f"{r['input_size']}", (r["macs_of_224px"], r["heldout_top1"]), fontsize=7, xytext=(3, -10),
                    textcoords="offset points")  # fmt: skip
    for goal, marker in ((0.5, "s"), (0.7, "^")):
        both = sorted((r for r in rows.values() if r["goal"] == goal), key=lambda r: r["input_size"])
        xs, ys = [r["macs_of_224px"] for r in both], [r["heldout_top1"] for r in both]
        ax.plot(xs, ys, marker, label=f"filters (+ resolution) to {goal} of the MACs")
        for r in both:
            ax.annotate(f"{r['input_size']} px", (r["macs_of_224px"], r["heldout_top1"]), fontsize=7,
                        xytext=(4, 2), textcoords="offset points")  # fmt: skip
    ax.set_xlabel("MACs kept, of the unpruned 224-px model's")
    ax.set_ylabel("top-1, 500 held-out photos")
    ax.set_title("MobileNetV2: fewer pixels against fewer filters (one-shot, no retraining)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
