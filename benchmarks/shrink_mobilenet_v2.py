"""Shrink the shared ImageNet MobileNetV2 to 0.84 of its parameters and win accuracy back by distillation.

Unlabeled CIFAR-10 images (upsampled to 224 px) are the only training data; top-1 is measured on the 1000
shared ImageNet photos before, after pruning and after retraining, for both allocations. Writes
benchmarks/results/shrink_mobilenet_v2.json. Run: `make bench-shrink` (about 35 min on 2 CPU cores:
13 min sensitivity, 22–27 uniform).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import zipfile
from pathlib import Path

import torch
from protocol import SHARED, WEIGHTS

from mobileprune import ShrinkConfig, load_model, save_output, shrink
from mobileprune.progress import Progress
from mobileprune.reporting.provenance import versions
from mobileprune.train.data import open_data, open_image_folder

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--allocations", default="uniform,sensitivity")
    ap.add_argument("--target", type=float, default=0.84)
    ap.add_argument("--steps-per-layer", type=int, default=10)
    ap.add_argument("--final-steps", type=int, default=300)
    ap.add_argument("--calibration-images", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--distill-loss", default="centered", help="centered or kl (see mobileprune/training.py)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "shrink_mobilenet_v2.json")
    args = ap.parse_args()

    from rich.console import Console

    progress = Progress(Console(), bars=False)
    workdir = Path(tempfile.mkdtemp(prefix="mobileprune-bench-"))
    with zipfile.ZipFile(SHARED / "data" / "cifar10-jpeg.zip") as zf:
        zf.extractall(workdir / "cifar10")
    cifar = next(p.parent for p in (workdir / "cifar10").rglob("train") if p.is_dir())
    runs = []
    for allocation in args.allocations.split(","):
        torch.manual_seed(0)
        loaded = load_model(WEIGHTS, arch="mobilenet_v2")
        spec = loaded.spec
        data = open_data(cifar, spec.input_size, spec.mean, spec.std)
        evals = open_image_folder(SHARED / "data" / "imagenet-sample", spec.input_size, spec.mean, spec.std)
        config = ShrinkConfig(
            target=args.target,
            allocation=allocation,
            schedule="layerwise",
            distill=True,
            steps_per_layer=args.steps_per_layer,
            epochs=args.final_steps / (len(data.train) / 32),
            calibration_images=args.calibration_images,
            eval_batches=0,
        )
        config.train.lr = args.lr
        config.train.distill_loss = args.distill_loss
        started = time.time()
        result = shrink(loaded, config, data, evals, progress)
        save_output(result, workdir / f"shrunk-{allocation}", force=True)
        report = result.report
        runs.append(
            {
                "allocation": allocation,
                "achieved_params_ratio": report["ratios"]["params"],
                "macs_ratio": report["ratios"]["macs"],
                "params": [report["before"]["params"], report["after"]["params"]],
                "top1": {k: (v or {}).get("top1") for k, v in report["accuracy"].items() if k != "eval_images"},
                "top5": {k: (v or {}).get("top5") for k, v in report["accuracy"].items() if k != "eval_images"},
                "retraining": report["retraining"],
                "timings_s": report["timings_s"],
                "wall_s": round(time.time() - started, 1),
            }
        )
        progress.log(json.dumps(runs[-1]))
        _write(args, runs)  # after every run: a long benchmark killed late keeps what it measured


def _write(args: argparse.Namespace, runs: list[dict]) -> None:
    result_json = {
        "benchmark": "shrink shared ImageNet MobileNetV2 to 0.84 params, distill on unlabeled CIFAR-10",
        "eval": "top-1/top-5 on ../shared/data/imagenet-sample (1000 images, Resize 256 / CenterCrop 224)",
        "args": {k: str(v) for k, v in vars(args).items()},
        "runs": runs,
        "machine": {"platform": platform.platform(), "cpus": torch.get_num_threads(), **versions()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result_json, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
