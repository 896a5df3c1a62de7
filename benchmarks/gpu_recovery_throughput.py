"""Recovery on a GPU: mobileprune's retraining loop against a plain PyTorch loop, images per second.

The CIFAR-10 recovery a user runs on a GPU (`shrink --device cuda --amp`): MobileNetV2, 10 classes, 96 px,
pruned to 0.5 of its MACs, then fine-tuned on labelled CIFAR-10 training images. Two measurements:

1. The user's command, end to end (`mobileprune shrink ... --device cuda --amp --workers W`): its report's
   fine-tune steps and time give images/s (checkpoints every --checkpoint-every steps included).
2. The same pruned model retrained by mobileprune's `Trainer` (what `shrink` runs) and by a plain PyTorch
   loop (torchvision ImageFolder, shuffled DataLoader with pinned memory, AdamW, bfloat16 autocast,
   channels_last, cross-entropy), same transforms, batch, workers and steps, interleaved `--repeats`
   times; the ratio of medians is the answer (goal: mobileprune ≥ 95% of the plain loop).

Random initial weights: throughput does not depend on them. Needs a CUDA GPU. Writes
benchmarks/results/gpu_recovery_throughput.json. Run: `python benchmarks/gpu_recovery_throughput.py --data DIR`
with DIR/train/<class>/*.jpg (CIFAR-10 as in ../shared/data/cifar10-jpeg.zip).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader

from mobileprune.artifacts import load
from mobileprune.atomic import write_json
from mobileprune.reporting.provenance import machine_facts, versions
from mobileprune.train.data import make_loader, open_data, train_transform
from mobileprune.train.loop import TrainConfig, Trainer

RESULTS = Path(__file__).resolve().parent / "results"
SIZE = 96
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/gpu-recovery"))
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=12)
    ap.add_argument("--steps", type=int, default=200, help="steps of each timed loop")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=float, default=2, help="fine-tune epochs of the CLI run")
    ap.add_argument("--out", type=Path, default=RESULTS / "gpu_recovery_throughput.json")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("this benchmark needs a CUDA GPU")
    args.work.mkdir(parents=True, exist_ok=True)
    shrunk = args.work / "shrunk"
    command = [
        sys.executable, "-m", "mobileprune", "shrink", "mobilenet_v2", "--num-classes", "10",
        "--input-size", str(SIZE), "--target", "0.5", "--by", "macs", "--data", str(args.data),
        "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", "3e-4",
        "--device", "cuda", "--amp", "--workers", str(args.workers), "--out", str(shrunk), "--force", "--quiet",
    ]  # fmt: skip
    started = time.time()
    subprocess.run(command, check=True)
    report = json.loads((shrunk / "report.json").read_text())
    steps, seconds = report["retraining"]["steps"], report["timings_s"]["retrain_s"]
    cli = {
        "command": " ".join(command[2:]),
        "wall_s": round(time.time() - started, 1),
        "fine_tune_steps": steps,
        "fine_tune_s": seconds,
        "images_per_s": round(steps * args.batch_size / seconds, 1),
        "accuracy": report["accuracy"],
        "macs_ratio": report["ratios"]["macs"],
    }
    print("CLI run:", cli, flush=True)

    data = open_data(args.data, SIZE, MEAN, STD, seed=0)
    config = TrainConfig(lr=3e-4, amp=True)
    rows: dict[str, list[float]] = {"mobileprune": [], "plain": []}
    for r in range(args.repeats):
        for name, loop in (("mobileprune", _mobileprune), ("plain", _plain)):
            model = load(shrunk)  # the pruned model, fresh each time
            rate = loop(model, data, args, config)
            rows[name].append(rate)
            print(f"repeat {r + 1}: {name} {rate:.0f} images/s", flush=True)
    loaders = {name: _loader_rate(name, data, args, config) for name in ("mobileprune", "plain")}
    print("data loading alone (images/s):", loaders, flush=True)
    medians = {k: statistics.median(v) for k, v in rows.items()}
    result = {
        "what": __doc__.splitlines()[0],
        "cli_run": cli,
        "loops": {
            "batch_size": args.batch_size,
            "workers": args.workers,
            "steps": args.steps,
            "repeats": args.repeats,
            "images_per_s": {k: [round(x, 1) for x in v] for k, v in rows.items()},
            "median_images_per_s": {k: round(v, 1) for k, v in medians.items()},
            "mobileprune_vs_plain": round(medians["mobileprune"] / medians["plain"], 4),
            "noise_plain_spread": round((max(rows["plain"]) - min(rows["plain"])) / medians["plain"], 4),
            "data_loading_alone_images_per_s": loaders,
        },
        "gpu": torch.cuda.get_device_name(0),
        "versions": versions(),
        "machine": machine_facts(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, result)
    print(json.dumps(result["loops"], indent=1))


def _loaders(name: str, data, args, config: TrainConfig):
    transform = train_transform(SIZE, MEAN, STD, config.crop_scale)
    if name == "mobileprune":
        images = data.train.with_transform(transform)
        return make_loader(images, args.batch_size, True, 0, args.workers, pin_memory=True)
    images = torchvision.datasets.ImageFolder(str(args.data / "train"), transform=transform)
    return DataLoader(images, args.batch_size, shuffle=True, num_workers=args.workers, pin_memory=True)


def _loader_rate(name: str, data, args, config: TrainConfig) -> float:
    """Batches per second of the loader alone (one pass, or --steps batches): is the input pipeline the limit?"""
    loader = _loaders(name, data, args, config)
    t, images = time.perf_counter(), 0
    for i, batch in enumerate(loader):
        images += len(batch.images if hasattr(batch, "images") else batch[0])
        if i + 1 == args.steps:
            break
    return round(images / (time.perf_counter() - t), 1)


def _mobileprune(model: torch.nn.Module, data, args, config: TrainConfig) -> float:
    trainer = Trainer(_loaders("mobileprune", data, args, config), config, device="cuda")  # as shrink on CUDA
    torch.cuda.synchronize()
    t = time.perf_counter()
    trainer.train(model, args.steps)
    torch.cuda.synchronize()
    return args.steps * args.batch_size / (time.perf_counter() - t)


def _plain(model: torch.nn.Module, data, args, config: TrainConfig) -> float:
    """What a PyTorch user writes: ImageFolder, shuffled pinned DataLoader, AdamW, bf16 autocast, channels_last."""
    loader = _loaders("plain", data, args, config)
    model = model.cuda().to(memory_format=torch.channels_last).train()
    for m in model.modules():  # frozen batch norm, as mobileprune retrains
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    torch.cuda.synchronize()
    t = time.perf_counter()
    done = 0
    while done < args.steps:
        for x, y in loader:
            x = x.cuda(non_blocking=True).contiguous(memory_format=torch.channels_last)
            y = y.cuda(non_blocking=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()  # a loop that logs its loss syncs once per step, as mobileprune's does
            done += 1
            if done == args.steps:
                break
    torch.cuda.synchronize()
    return args.steps * args.batch_size / (time.perf_counter() - t)


if __name__ == "__main__":
    main()
