"""Which distillation recipe wins accuracy back from a one-shot prune, chosen without touching the held-out half.

The odd-class (unlabeled) photos are split by file name into 400 for training and 100 for validation;
a recipe is scored by top-1 agreement with the unpruned teacher on those 100 (no labels, no even-class
photo). Every recipe starts from the same pruned folder. Runs anywhere (`--device cuda` for a sweep in
minutes); the defaults chosen from it are then measured on the protocol by benchmarks/accuracy_at_2x.py.

    python benchmarks/recovery_recipes.py PRUNED_FOLDER TEACHER.pth ODD_IMAGES/ --device cuda --out results.json
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

import mobileprune
from mobileprune.models import classifier_module
from mobileprune.models.labels import class_ids
from mobileprune.prune.graph import PruningGraph
from mobileprune.prune.reconstruct import reconstruct, refittable_layers
from mobileprune.train.data import (
    ImageSet,
    calibration_batches,
    eval_transform,
    make_loader,
    open_image_folder,
    train_transform,
)
from mobileprune.train.features import FeatureMatch
from mobileprune.train.loop import TrainConfig, Trainer, evaluate

BASE = TrainConfig(optimizer="adamw", lr=3e-5, distill=True, temperature=2.0, distill_loss="kl", crop_scale=0.5)
RECIPES = {
    "base (lr 3e-5, 20 ep, crop 0.5, T 2, kl)": (BASE, 20),
    "lr 1e-5": (replace(BASE, lr=1e-5), 20),
    "lr 1e-4": (replace(BASE, lr=1e-4), 20),
    "60 epochs": (BASE, 60),
    "lr 1e-5, 60 epochs": (replace(BASE, lr=1e-5), 60),
    "crop 0.25": (replace(BASE, crop_scale=0.25), 20),
    "mixup 0.4": (replace(BASE, mixup=0.4), 20),
    "T 4": (replace(BASE, temperature=4.0), 20),
    "T 1": (replace(BASE, temperature=1.0), 20),
    "centered": (replace(BASE, distill_loss="centered"), 20),
    "sgd lr 1e-4": (replace(BASE, optimizer="sgd", lr=1e-4), 20),
    "mixup 0.4, crop 0.25, 60 epochs": (replace(BASE, mixup=0.4, crop_scale=0.25), 60),
    "5 epochs": (BASE, 5),
    "5 epochs, features 1": (replace(BASE, feature_weight=1.0), 5),
    "5 epochs, features 10": (replace(BASE, feature_weight=10.0), 5),
    "5 epochs, lr 1e-4, features 1": (replace(BASE, lr=1e-4, feature_weight=1.0), 5),
}


def split(images: ImageSet) -> tuple[list, list]:
    """400 / 100 by a hash of the file name: stable, and unrelated to class."""

    def key(sample):
        return hashlib.sha256(sample[0].name.encode()).hexdigest()

    ordered = sorted(images.samples, key=key)
    return ordered[:400], ordered[400:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pruned", type=Path)
    ap.add_argument("teacher", type=Path)
    ap.add_argument("images", type=Path)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--only", default="", help="comma-separated recipe names (default: all)")
    ap.add_argument(
        "--reconstruct", type=int, default=0, help="first re-fit the pruned model on this many training images"
    )
    ap.add_argument("--out", type=Path, default=Path("recovery_recipes.json"))
    args = ap.parse_args()
    teacher = mobileprune.load_model(args.teacher, arch="mobilenet_v2").model.eval().to(args.device)
    pruned = mobileprune.load_model(args.pruned).model.eval()
    spec = mobileprune.load_model(args.pruned).spec
    images = open_image_folder(args.images, spec.input_size, spec.mean, spec.std)
    train_samples, val_samples = split(images)
    val = ImageSet(val_samples, [], eval_transform(spec.input_size, spec.mean, spec.std))
    with torch.no_grad():  # the teacher's top-1 is the validation label: agreement, no ground truth needed
        agreed = [int(teacher(val[i][0][None].to(args.device)).argmax()) for i in range(len(val))]
    val = ImageSet([(p, t) for (p, _), t in zip(val_samples, agreed, strict=True)], class_ids(spec), val.transform)
    val_loader = make_loader(val, 50, False, workers=args.workers)
    kept = _kept_outputs(teacher, args.pruned, spec)
    if args.reconstruct:
        fitted = _reconstruct(pruned, teacher, args, train_samples, spec, kept)
        print(f"reconstruction on {args.reconstruct} training photos: {fitted}", flush=True)
    start = evaluate(pruned.to(args.device), val_loader, args.device).top1
    results = {"one_shot_agreement": start, "recipes": []}
    print(f"one-shot agreement with the teacher on 100 odd-class photos: {start:.3f}", flush=True)
    chosen = [n for n in RECIPES if not args.only or n in args.only.split(",")]
    for name in chosen:
        config, epochs = RECIPES[name]
        train = ImageSet(train_samples, [], train_transform(spec.input_size, spec.mean, spec.std, config.crop_scale))
        loader = make_loader(train, args.batch_size, True, workers=args.workers)
        student = copy.deepcopy(pruned).to(args.device)
        trainer = Trainer(loader, config, teacher, args.device)
        if config.feature_weight > 0:
            trainer.features = FeatureMatch(student, teacher, refittable_layers(student), kept.get)
        started = time.time()
        trainer.train(student, epochs * len(loader), cosine=True)
        agreement = evaluate(student, val_loader, args.device).top1
        results["recipes"].append(
            {
                "recipe": name,
                "epochs": epochs,
                "agreement": agreement,
                "seconds": round(time.time() - started, 1),
                "config": config.__dict__,
            }
        )
        print(f"{name}: {agreement:.3f} ({time.time() - started:.0f} s)", flush=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


def _kept_outputs(teacher, pruned_folder, spec) -> dict:
    """Which original output channels each pruned layer kept: the plan replayed on a copy of the teacher."""
    reference = copy.deepcopy(teacher).cpu()
    example = torch.randn(1, 3, spec.input_size, spec.input_size)
    graph = PruningGraph(reference, example, [classifier_module(reference, spec)])
    for step in mobileprune.load_model(pruned_folder).plan.steps:
        graph.prune(step.group, list(step.removed))
    return {name: graph.kept_outputs(name) for name, _ in reference.named_modules() if graph.kept_outputs(name)}


def _reconstruct(pruned, teacher, args, train_samples, spec, kept) -> str:
    images = ImageSet(train_samples, [], eval_transform(spec.input_size, spec.mean, spec.std))
    batches = [b.to(args.device) for b in calibration_batches(images, args.reconstruct, 64, seed=0)]
    fits = reconstruct(pruned.to(args.device), teacher, refittable_layers(pruned), batches, kept.get)
    before = sum(f.error_before for f in fits) / len(fits)
    after = sum(f.error_after for f in fits) / len(fits)
    return f"mean relative error {before:.3f} -> {after:.3f}"


if __name__ == "__main__":
    main()
