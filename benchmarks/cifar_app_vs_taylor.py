"""The CIFAR-10 app model at 0.5 MACs: mobileprune against Torch-Pruning's global Taylor, same labelled fine-tune.

The app model (the shared MobileNetV2 fine-tuned on CIFAR-10 at 96 px for 1,200 steps of 32, made and cached
by protocol.make_cifar_app) pruned to 0.5 of its MACs two ways:
- mobileprune's default (`shrink --by macs --target 0.5 --epochs 0`: sensitivity allocation, L1,
  reconstruction) on the 8,000 training images every CIFAR benchmark prunes with;
- Torch-Pruning 1.6 `MetaPruner` with global `GroupTaylorImportance` (gradients of 4 batches of 32 training
  images), solved to the same MAC ratio (benchmarks/anchors.py), no reconstruction (its recipe as published).
Each pruned model then gets the *same* labelled fine-tune: STEPS steps of 32 from the whole 50,000-image
training set (Trainer, AdamW lr 3e-4, cosine), the budget the app model itself was trained with. As a
reference, the unpruned app model gets the same extra steps too: "within 1 point of the unpruned model" is
judged against both. Everything is scored on the 10,000 CIFAR-10 test images (standard error ≈ 0.4 points).

`--distill` makes the fine-tune distillation from the unpruned app model plus the labels (plain KL at
temperature 2 + cross-entropy): the recovery a user with labels and the original model should run. Its rows
are stored beside the plain fine-tune's, named "ROW (kd+labels, N steps)"; every row records its fine-tune
and the app model it started from (`app_model`, a hash of the file; rows without one were measured on the
app model made before its classifier was seeded, 0.8543 on the test images).

Writes benchmarks/results/cifar_app_vs_taylor.json. Run: `python benchmarks/cifar_app_vs_taylor.py [--steps 1200]
[--distill]` (about 45 min on 2 cores, plus the app model's fine-tune when it is not cached yet).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
from pathlib import Path

import torch
from protocol import CIFAR_WORK, cifar_app

from mobileprune import ShrinkConfig, shrink
from mobileprune.atomic import write_json
from mobileprune.models import classifier_module
from mobileprune.prune.cost import count_cost
from mobileprune.reporting.provenance import machine_facts, versions
from mobileprune.train.data import calibration_batches, make_loader, open_image_folder
from mobileprune.train.loop import TrainConfig, Trainer, evaluate

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from anchors import torch_pruning  # noqa: E402

SIZE = 96
FINE_TUNE = TrainConfig(lr=3e-4)
DISTILL = TrainConfig(lr=3e-4, distill=True, distill_loss="kl", label_weight=1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=CIFAR_WORK)
    ap.add_argument("--steps", type=int, default=1200, help="labelled fine-tuning steps of 32 for every row")
    ap.add_argument("--distill", action="store_true", help="fine-tune = distillation from the app model + labels")
    ap.add_argument("--only", default="", help="comma-separated rows to measure again (default: all)")
    args = ap.parse_args()
    out = HERE / "results" / "cifar_app_vs_taylor.json"
    everything = {"mobileprune", "tp_global_taylor"} | (set() if args.distill else {"unpruned_same_steps"})
    wanted = set(args.only.split(",")) if args.only else everything
    previous = _previous_rows(out) if out.exists() else {}
    tuning = DISTILL if args.distill else FINE_TUNE
    suffix = f" (kd+labels, {args.steps} steps)" if args.distill else ""
    fine_tune = {"steps": args.steps, "batch": 32, "cosine": True, **tuning.__dict__}
    torch.manual_seed(0)
    app, _, data, root = cifar_app(args.work)
    app_model = hashlib.sha256((args.work / "cifar_app.pt").read_bytes()).hexdigest()[:12]  # rows say which
    data.val = None  # shrink's own evaluations would score all 10,000 test images after every phase
    full_train = open_image_folder(root / "train", SIZE, app.spec.mean, app.spec.std, train=True)
    test_loader = make_loader(open_image_folder(root / "test", SIZE, app.spec.mean, app.spec.std), 100, False)
    example = torch.randn(1, 3, SIZE, SIZE)
    base_macs = count_cost(app.model, example).macs

    def fine_tuned(model: torch.nn.Module, started: float, **row) -> dict:
        row["top1_pruned"] = evaluate(model.eval(), test_loader).top1
        row["mac_ratio"] = round(count_cost(model, example).macs / base_macs, 4)
        row["prune_s"] = round(time.time() - started, 1)
        started = time.time()
        teacher = app.model if tuning.distill else None
        Trainer(make_loader(full_train, 32, True), tuning, teacher).train(model, args.steps, cosine=True)
        row["top1"] = evaluate(model.eval(), test_loader).top1
        row["fine_tune_s"] = round(time.time() - started, 1)
        row["fine_tune"] = fine_tune
        row["app_model"] = app_model
        print(row, flush=True)
        return row

    def save() -> None:  # after every row: a long run stopped half-way keeps what it measured
        write_json(
            out,
            {"what": __doc__.splitlines()[0], "rows": rows, "train_images": len(full_train), "test_images": 10000,
             "versions": versions(), "machine": machine_facts()},
        )  # fmt: skip

    unpruned = {"top1": evaluate(app.model.eval(), test_loader).top1, "app_model": app_model}
    rows: dict = {**previous, "unpruned": unpruned}
    print(rows, flush=True)
    if "mobileprune" in wanted:
        started = time.time()
        config = ShrinkConfig(target=0.5, by="macs", schedule="oneshot", epochs=0)
        mine = shrink(copy.deepcopy(app), config, data).model
        name = "shrink --by macs --target 0.5 --epochs 0 (defaults)"
        rows["mobileprune" + suffix] = fine_tuned(mine, started, recipe=name)
        save()
    if "tp_global_taylor" in wanted:
        started = time.time()
        batches = calibration_batches(data.calibration_set(), 128, 32, 0)
        classifier = classifier_module(app.model, app.spec)
        taylor, _ = torch_pruning(app.model, example, classifier, "global_taylor", 0.5, batches)
        name = "MetaPruner global GroupTaylorImportance"
        rows["tp_global_taylor" + suffix] = fine_tuned(taylor, started, recipe=name)
        save()
    if "unpruned_same_steps" in wanted:
        reference = copy.deepcopy(app.model)
        recipe = "the unpruned app model, same fine-tune"
        rows["unpruned_same_steps" + suffix] = fine_tuned(reference, time.time(), recipe=recipe)
    save()


def _previous_rows(out: Path) -> dict:
    """Rows of an earlier run; those from before rows carried their fine-tune get the run's one."""
    earlier = json.loads(out.read_text())
    rows = earlier["rows"]
    shared = {k: v for k, v in earlier.get("fine_tune", {}).items() if k != "train_images"}
    for name, row in rows.items():
        if name != "unpruned" and "fine_tune" not in row and shared:
            row["fine_tune"] = shared
    return rows


if __name__ == "__main__":
    main()
