"""Allocation without data: is `magnitude` (the new data-free default) a plan a user would accept?

1. The shared ImageNet MobileNetV2, one-shot to 0.84 of its parameters with no images at all: top-1 on the
   held-out (even-class) half of the shared photos for uniform, magnitude, and sensitivity measured on
   random noise (the previous data-free default).
2. Random-weight hold-out architectures at 0.84 parameters: the MAC ratio each allocation leaves (the
   noise-measured sensitivity gutted LCNet to 0.17 of its MACs).

Writes benchmarks/results/data_free_allocation.json and .png. Run: `make bench-data-free` (about 15 min).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from protocol import SHARED, WEIGHTS

from mobileprune import ShrinkConfig, load_model, shrink
from mobileprune.api import open_shrink_data
from mobileprune.atomic import write_json
from mobileprune.reporting.plots import pyplot, save_figure
from mobileprune.reporting.provenance import machine_facts, versions

HERE = Path(__file__).resolve().parent
ALLOCATIONS = ("uniform", "magnitude", "sensitivity")
HOLDOUT_ARCHS = ("timm:lcnet_100", "timm:tinynet_a", "timm:fbnetc_100", "timm:mobileone_s0", "mobilenet_v3_large")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", type=float, default=0.84)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "data_free_allocation.json")
    args = ap.parse_args()
    split = Path(tempfile.mkdtemp(prefix="mobileprune-split-"))
    subprocess.run([sys.executable, str(SHARED / "protocols" / "imagenet_split.py"), str(split)], check=True)
    real = []
    for allocation in ALLOCATIONS:
        torch.manual_seed(0)
        loaded = load_model(WEIGHTS, arch="mobilenet_v2")
        _, heldout = open_shrink_data(loaded.spec, None, split / "heldout", distill=False)
        started = time.time()
        result = shrink(
            loaded, ShrinkConfig(target=args.target, allocation=allocation, schedule="oneshot"), None, heldout
        )
        acc = result.report.accuracy
        real.append(
            {
                "allocation": allocation,
                "strategy": result.report.allocation["strategy"],
                "ratios": result.report.ratios,
                "top1_before": acc.before.top1,
                "top1_one_shot": acc.after_pruning.top1,
                "heldout_images": acc.after_pruning.images,
                "wall_s": round(time.time() - started, 1),
            }
        )
        print(real[-1], flush=True)
    holdout = []
    for arch in HOLDOUT_ARCHS:
        for allocation in ALLOCATIONS:
            torch.manual_seed(0)
            started = time.time()
            result = shrink(
                load_model(arch), ShrinkConfig(target=args.target, allocation=allocation, schedule="oneshot")
            )
            holdout.append(
                {
                    "arch": arch,
                    "allocation": allocation,
                    **result.report.ratios,
                    "wall_s": round(time.time() - started, 1),
                }
            )
            print(holdout[-1], flush=True)
    write_json(
        args.out,
        {
            "benchmark": __doc__.splitlines()[0],
            "protocol": "one-shot, no data; top-1 on the 500 even-class shared ImageNet photos (imagenet_split.py)",
            "target_params": args.target,
            "mobilenet_v2_real_weights": real,
            "random_weight_architectures": holdout,
            "machine": machine_facts(),
            "versions": versions(),
        },
    )
    plot(real, holdout, args.out.with_suffix(".png"))
    print(f"wrote {args.out}")


def plot(real: list[dict], holdout: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 2]})
    left.bar([r["allocation"] for r in real], [r["top1_one_shot"] for r in real], color=["C0", "C1", "C2"])
    left.axhline(real[0]["top1_before"], color="grey", ls=":", label="unpruned")
    left.set_ylabel("top-1, held-out half (500 photos)")
    left.set_title("MobileNetV2 (ImageNet), 0.84 params, no data")
    left.legend(fontsize=8)
    archs = list(dict.fromkeys(h["arch"] for h in holdout))
    width = 0.8 / len(ALLOCATIONS)
    for i, allocation in enumerate(ALLOCATIONS):
        macs = [next(h["macs"] for h in holdout if h["arch"] == a and h["allocation"] == allocation) for a in archs]
        right.bar([x + (i - 1) * width for x in range(len(archs))], macs, width, label=allocation, color=f"C{i}")
    right.set_xticks(range(len(archs)), [a.split(":")[-1] for a in archs], fontsize=8)
    right.set_ylabel("MACs kept")
    right.set_title("random weights, 0.84 params, no data: what is left of the arithmetic")
    right.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
