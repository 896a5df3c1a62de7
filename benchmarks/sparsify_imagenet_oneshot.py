"""One-shot unstructured sparsity on the shared ImageNet MobileNetV2: layer-wise OBS against plain magnitude.

Protocol (the accuracy issue's): the 500 odd-class photos are the unlabeled calibration images (OBS's
Hessians come from 128 of them), the 500 even-class photos are only scored. No fine-tuning: what each
method's choice of weights and OBS's compensation are worth on their own, at 0.5 and 0.7 sparsity of the
sparsifiable weights (1×1 convs and the classifier; the stem and depthwise convs stay dense). Magnitude is
shown per layer (Zhu & Gupta's uniform choice), with one global threshold and with ERK shares (small
layers denser); OBS with SparseGPT's target (each layer's own output on the already-sparse inputs), with
the error correction (the dense network's output: later layers repair earlier ones), and with both the
correction and ERK shares (the defaults). Rows already in the JSON are kept.

Writes benchmarks/results/sparsify_imagenet_oneshot.{json,png}:
`python benchmarks/sparsify_imagenet_oneshot.py [--split DIR]`.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from protocol import WEIGHTS, build_split

from mobileprune import load_model
from mobileprune.api import open_shrink_data
from mobileprune.atomic import write_json
from mobileprune.reporting.plots import pyplot, save_figure
from mobileprune.reporting.provenance import machine_facts, versions
from mobileprune.sparsify.config import SparsifyConfig
from mobileprune.sparsify.run import sparsify
from mobileprune.train.data import make_loader
from mobileprune.train.loop import evaluate

HERE = Path(__file__).resolve().parent
ROWS = {  # label: (method, scope, method options)
    "magnitude (layer)": ("magnitude", "layer", {}),
    "magnitude (global)": ("magnitude", "global", {}),
    "magnitude (erk)": ("magnitude", "erk", {}),
    "obs (SparseGPT target)": ("obs", "layer", {"correct": False}),
    "obs (error-corrected)": ("obs", "layer", {}),
    "obs (error-corrected, erk): default": ("obs", "erk", {}),
}
SPARSITIES = (0.5, 0.7)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", type=Path, help="an existing imagenet_split.py output (default: build one)")
    ap.add_argument("--calibration-images", type=int, default=128)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "sparsify_imagenet_oneshot.json")
    ap.add_argument("--rows", help="comma-separated labels to compute (default: all of ROWS)")
    args = ap.parse_args()
    split = build_split(args.split)
    dense = load_model(WEIGHTS, arch="mobilenet_v2")
    data, heldout = open_shrink_data(dense.spec, split / "unlabeled", split / "heldout", distill=True)
    loader = make_loader(heldout, 50, False, workers=1)
    unpruned = evaluate(dense.model, loader).top1
    print(f"unpruned top-1 on {len(heldout)} held-out photos: {unpruned:.3f}", flush=True)
    rows = json.loads(args.out.read_text())["rows"] if args.out.exists() else []
    for sparsity in SPARSITIES:
        for label, (method, scope, options) in ROWS.items():
            if args.rows and label not in args.rows.split(","):
                continue
            if any(r["label"] == label and r["sparsity"] == sparsity for r in rows):
                continue
            loaded = load_model(WEIGHTS, arch="mobilenet_v2")
            config = SparsifyConfig(
                sparsity=sparsity,
                method=method,
                scope=scope,
                calibration_images=args.calibration_images,
                distill=True,
                method_options=options,
            )
            t = time.time()
            result = sparsify(loaded, config, data)
            wall = time.time() - t
            top1 = evaluate(result.model, loader).top1
            row = {
                "label": label,
                "method": method,
                "scope": scope,
                "sparsity": sparsity,
                "achieved": result.report.sparsity["achieved"],
                "top1": round(top1, 4),
                "standard_error": round(math.sqrt(top1 * (1 - top1) / len(heldout)), 4),
                "wall_s": round(wall, 1),
                "obs_mean_error": result.report.sparsity.get("obs_mean_error"),
            }
            rows.append(row)
            print(row, flush=True)
            _save(args.out, rows, unpruned, args.calibration_images)
    _plot(rows, unpruned, args.out.with_suffix(".png"))


def _save(path: Path, rows: list[dict], unpruned: float, calibration_images: int) -> None:
    write_json(
        path,
        {
            "protocol": "shared ImageNet MobileNetV2; calibration on odd-class photos, top-1 on the 500 even-class",
            "unpruned_top1": round(unpruned, 4),
            "calibration_images": calibration_images,
            "rows": rows,
            "versions": versions(),
            "machine": machine_facts(),
        },
    )


def _plot(rows: list[dict], unpruned: float, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(ROWS)
    for i, label in enumerate(ROWS):
        picked = [r for r in rows if r["label"] == label]
        xs = [SPARSITIES.index(r["sparsity"]) + (i - (len(ROWS) - 1) / 2) * width for r in picked]
        ax.bar(
            xs,
            [r["top1"] for r in picked],
            width,
            yerr=[r["standard_error"] for r in picked],
            label=label,
        )
    ax.axhline(unpruned, color="gray", linestyle="--", label=f"dense {unpruned:.3f}")
    ax.set_xticks(range(len(SPARSITIES)), [f"sparsity {s:g}" for s in SPARSITIES])
    ax.set_ylabel("top-1, 500 held-out photos (no fine-tuning)")
    ax.set_title("MobileNetV2 ImageNet, one-shot: OBS vs magnitude")
    ax.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
