"""The CIFAR-10 app model at 0.5 MACs: mobileprune against Torch-Pruning's global Taylor, same labelled fine-tune.

The app model (the shared MobileNetV2 fine-tuned on CIFAR-10 at 96 px, made and cached by class_damage.py)
pruned to 0.5 of its MACs two ways, each followed by the same 300 labelled steps of 32 (Trainer, AdamW
lr 3e-4, cosine, the same 8,000 training images):
- mobileprune's default (sensitivity allocation on 32 training images, L1, reconstruction on 256) —
  class_damage.py's `cifar_shrunk`, built with exactly this recipe;
- Torch-Pruning 1.6 `MetaPruner` with global `GroupTaylorImportance` (gradients of 4 batches of 32 training
  images), solved to the same MAC ratio (benchmarks/anchors.py), no reconstruction.
Both scored on the 10,000 CIFAR-10 test images (standard error about 0.4 points at 0.8).

Writes benchmarks/results/cifar_app_vs_taylor.json. Run after `make bench-damage` (it needs the cached models):
`python benchmarks/cifar_app_vs_taylor.py`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from protocol import CIFAR_WORK, cifar_app

from mobileprune.artifacts.shrink_folder import load_output
from mobileprune.atomic import write_json
from mobileprune.models import classifier_module
from mobileprune.prune.cost import count_cost
from mobileprune.reporting.provenance import machine_facts, versions
from mobileprune.train.data import calibration_batches, make_loader, open_image_folder
from mobileprune.train.loop import TrainConfig, Trainer, evaluate

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from anchors import torch_pruning  # noqa: E402

SIZE, STEPS = 96, 300


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=CIFAR_WORK)
    args = ap.parse_args()
    app, app_args, data, root = cifar_app(args.work)
    test = open_image_folder(root / "test", SIZE, app.spec.mean, app.spec.std)
    test_loader = make_loader(test, 100, False, workers=1)
    example = torch.randn(1, 3, SIZE, SIZE)
    rows: dict = {"unpruned": {"top1": evaluate(app.model.eval(), test_loader).top1}}
    print(rows, flush=True)

    mine = load_output(args.work / "cifar_shrunk")
    report = (args.work / "cifar_shrunk" / "report.json").read_text()
    rows["mobileprune"] = {
        "top1": evaluate(mine.model.eval(), test_loader).top1,
        "mac_ratio": round(count_cost(mine.model, example).macs / count_cost(app.model, example).macs, 4),
        "recipe": "sensitivity + L1 + reconstruction (256 images) + 300 labelled steps (class_damage.py)",
        "report_accuracy": json.loads(report)["accuracy"],
    }
    print(rows["mobileprune"]["top1"], flush=True)

    started = time.time()
    batches = calibration_batches(data.calibration_set(), 128, 32, 0)
    classifier = classifier_module(app.model, app.spec)
    taylor, _ = torch_pruning(app.model, example, classifier, "global_taylor", 0.5, batches)
    pruned_top1 = evaluate(taylor.eval(), test_loader).top1
    trainer = Trainer(make_loader(data.train, 32, True), TrainConfig(lr=3e-4))
    trainer.train(taylor, STEPS, cosine=True)
    rows["tp_global_taylor"] = {
        "top1_pruned": pruned_top1,
        "top1": evaluate(taylor.eval(), test_loader).top1,
        "mac_ratio": round(count_cost(taylor, example).macs / count_cost(app.model, example).macs, 4),
        "recipe": "MetaPruner global GroupTaylorImportance (4 batches of 32), 300 labelled steps, no reconstruction",
        "wall_s": round(time.time() - started, 1),
    }
    print(rows["tp_global_taylor"], flush=True)
    write_json(
        HERE / "results" / "cifar_app_vs_taylor.json",
        {"what": __doc__.splitlines()[0], "rows": rows, "test_images": len(test), "versions": versions(),
         "machine": machine_facts()},
    )  # fmt: skip


if __name__ == "__main__":
    main()
