"""The criteria compared on a real task: MobileNetV2 (shared ImageNet weights) fine-tuned on CIFAR-10 at 96 px.

1. Fine-tune the shared ImageNet MobileNetV2 on CIFAR-10 train (labels, 96 px, new 10-class head): the
   "user's app model". Cached in the work folder, so a rerun skips it.
2. `sweep` it over parameter targets 0.84, 0.7, 0.5 with each criterion, every point with the same budget:
   sensitivity allocation (KL on 32 training images), one-shot pruning, then `--final-steps` batches of
   fine-tuning on labels. `greedy` is the greedy schedule (l1 inside groups; it decides the amounts by
   measuring, so it uses no sensitivity allocation). `bn` and `sss` first get `--sparsity-steps` of
   sparsity training (network slimming needs it: this checkpoint's batch norms are folded, every gamma is
   1; sss learns its gates there), on top of the shared budget.
3. Accuracy on `--test-images` CIFAR-10 test images. Writes benchmarks/results/sweep_cifar/ (sweep.json,
   sweep.csv, pareto.png, points/ and finetune.json). Resumable: run it again after a kill.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn as nn
from protocol import SHARED, WEIGHTS
from rich.console import Console

from mobileprune import ShrinkConfig, load_model
from mobileprune.progress import Progress
from mobileprune.reporting.console import print_sweep
from mobileprune.sweep import run_sweep
from mobileprune.train.data import make_loader, open_data
from mobileprune.train.loop import TrainConfig, Trainer, evaluate

HERE = Path(__file__).resolve().parent
SIZE = 96


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--criteria", default="l1,bn,sss,taylor,hessian,random,greedy")
    ap.add_argument("--targets", default="0.84,0.7,0.5")
    ap.add_argument("--finetune-steps", type=int, default=1200)
    ap.add_argument("--final-steps", type=int, default=150)
    ap.add_argument("--sparsity-steps", type=int, default=150)
    ap.add_argument("--test-images", type=int, default=1000)
    ap.add_argument("--ucb-pulls", type=float, default=1.0)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mobileprune-sweep-cifar")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "sweep_cifar")
    args = ap.parse_args()
    console = Console()
    progress = Progress(console)
    torch.manual_seed(0)
    args.work.mkdir(parents=True, exist_ok=True)
    if not (args.work / "cifar10").is_dir():
        with zipfile.ZipFile(SHARED / "data" / "cifar10-jpeg.zip") as zf:
            zf.extractall(args.work / "cifar10")
    root = next(p.parent for p in (args.work / "cifar10").rglob("train") if p.is_dir())
    base = load_model(WEIGHTS, arch="mobilenet_v2")
    spec = replace(base.spec, input_size=SIZE)
    data = open_data(root, SIZE, spec.mean, spec.std)
    data.val.samples = random.Random(0).sample(data.val.samples, args.test_images)
    test_loader = make_loader(data.val, 100, False)

    checkpoint = args.work / "mobilenet_v2_cifar10.pt"
    args.out.mkdir(parents=True, exist_ok=True)
    if not checkpoint.exists():
        model = base.model
        model.classifier[1] = nn.Linear(model.classifier[1].in_features, 10)
        trainer = Trainer(make_loader(data.train, 32, True), TrainConfig(lr=3e-4))
        started = time.time()
        with progress.task("fine-tune on CIFAR-10", args.finetune_steps) as bar:
            trainer.train(model, args.finetune_steps, tick=lambda loss: bar.advance(1, f"{loss:.3f}"), cosine=True)
        acc = evaluate(model, test_loader)
        torch.save(model.state_dict(), checkpoint)
        record = {"steps": args.finetune_steps, "batch": 32, "lr": 3e-4, "size": SIZE, "wall_s": time.time() - started}
        (args.out / "finetune.json").write_text(json.dumps({**record, "test_top1": acc.top1}, indent=2) + "\n")
        progress.log(f"fine-tuned: test top-1 {acc.top1:.4f} ({time.time() - started:.0f} s)")

    def load():
        loaded = load_model(checkpoint, arch="mobilenet_v2", arch_kwargs={"num_classes": 10})
        loaded.spec = replace(loaded.spec, input_size=SIZE)
        return loaded

    steps_per_epoch = len(make_loader(data.train, 32, True))
    config = ShrinkConfig(
        target=1.0,
        allocation="sensitivity",
        schedule="oneshot",
        steps_per_layer=0,  # greedy: no fine-tuning between its steps, the same final budget as the others
        epochs=args.final_steps / steps_per_epoch,
        sparsity_train=args.sparsity_steps / steps_per_epoch,
        l1_gamma=1e-4,
        calibration_images=32,
        criterion_options={"pulls_per_channel": args.ucb_pulls},  # given to ucb only (sweep.method_config)
        train=TrainConfig(lr=1e-4),
    )
    targets = [float(t) for t in args.targets.split(",")]
    points = run_sweep(load, targets, args.criteria.split(","), config, args.out, data, data.val, progress)
    print_sweep(points, console)
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
