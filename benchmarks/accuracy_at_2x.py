"""Accuracy at 2x, side by side: mobileprune against Torch-Pruning's recipes and width scaling, one run.

Protocol (the accuracy issue's): the shared ImageNet MobileNetV2; the 500 odd-class photos are the user's
unlabeled images (allocation, calibration, reconstruction, distillation); the 500 even-class photos only
give top-1. Every method is pruned to the same MAC ratio, then goes through the *same* recovery:

    pruned  →  reconstruction (least squares on the odd photos and their mirror images, as shrink's default;
    a classifier after global pooling fitted at the positions before pooling; earlier rows used 256 photos
    without mirrors, then pooled vectors for the classifier: each row says)  →  distillation (STEPS × batch 32 from
    the unpruned model, KL at T=2, AdamW lr 3e-5, cosine, crops of ≥ 50% + flips, odd photos only)

and top-1 on the held-out half is taken after each stage, with the wall time of each stage.

Rows: Torch-Pruning 1.6's `MetaPruner` with uniform L1 (GroupMagnitudeImportance), global Taylor and global
LAMP; width scaling (first channels of every layer, uniform ratio); and three mobileprune settings, all L1
within layers: sensitivity measured once with plain zeroed channels (the default before compensated probes;
reconstruction after it); compensated probes (removed channels predicted from the kept ones, see
mobileprune/prune/compensation.py; with the third recipe, predictions fitted without the probe photos)
measured once (the default before `--rounds auto`); and compensated probes re-measured in 4 rounds with
reconstruction between rounds (today's default at these targets: `--rounds auto`). The last two
reconstruct inside shrink, so their "pruned" column is n/a and their prune time includes reconstruction.

`--by latency`: the rows are held to a *measured* latency ratio instead (LiteRT fp32, one thread, this
machine, timed interleaved against the unpruned model): shrink's default with `--by latency`, and each
Torch-Pruning recipe solved to the same latency tables' prediction, timed and re-aimed by the same correction
loop (`meet_measured_target`); every row is then timed once more by the benchmark. Run it on an idle machine.

Writes benchmarks/results/accuracy_at_2x.json and .png. Run: `make bench-accuracy` (about 75 min on 2 cores);
`python benchmarks/accuracy_at_2x.py --by latency --targets 0.5` for the measured 2x rows.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from protocol import WEIGHTS, build_split
from rich.console import Console

from mobileprune import ShrinkConfig, load_model, shrink
from mobileprune.api import open_shrink_data
from mobileprune.atomic import write_json
from mobileprune.models import classifier_module
from mobileprune.progress import Progress
from mobileprune.prune.cost import COST_MODELS, count_cost
from mobileprune.prune.graph import PruningGraph
from mobileprune.prune.measured_target import meet_measured_target
from mobileprune.prune.reconstruct import reconstruct, refittable_layers
from mobileprune.prune.recover import fitting_batches
from mobileprune.reporting.plots import pyplot, save_figure
from mobileprune.reporting.provenance import machine_facts, versions
from mobileprune.train.data import calibration_batches, make_loader, train_transform
from mobileprune.train.loop import TrainConfig, Trainer, evaluate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anchors import torch_pruning  # noqa: E402

HERE = Path(__file__).resolve().parent
ANCHORS = ("uniform_l1", "global_taylor", "global_lamp", "width")
DEFAULT = "mobileprune compensated sensitivity (4 rounds, default)"
TARGET_KEY = {"macs": "target_macs", "latency": "target_latency"}
# rounds, and whether shrink reconstructs (then its sensitivity probes are compensated)
OURS = {
    "mobileprune zeroed-probe sensitivity (1 round)": (1, False),
    "mobileprune compensated sensitivity (4 rounds, default)": (4, True),
    "mobileprune compensated sensitivity (1 round)": (1, True),
}
RECOVERY = TrainConfig(optimizer="adamw", lr=3e-5, distill=True, distill_loss="kl", temperature=2.0, crop_scale=0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="0.5,0.7")
    ap.add_argument(
        "--by",
        choices=("macs", "latency"),
        default="macs",
        help="latency: every row held to the measured LiteRT fp32 latency (one thread) of this machine; run idle",
    )
    ap.add_argument("--steps", type=int, default=48, help="distillation steps of 32 images for every row")
    ap.add_argument("--reconstruct-images", type=int, default=ShrinkConfig.reconstruct_images)
    ap.add_argument("--no-mirror", action="store_true", help="reconstruct without the mirror images")
    ap.add_argument("--only", default="", help="comma-separated row names, run in that order (default: all)")
    ap.add_argument("--split", type=Path, help="an existing imagenet_split.py output (default: build one)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "accuracy_at_2x.json")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    split = build_split(args.split)
    teacher_loaded = load_model(WEIGHTS, arch="mobilenet_v2")
    spec = teacher_loaded.spec
    data, heldout = open_shrink_data(spec, split / "unlabeled", split / "heldout", distill=True)
    eval_loader = make_loader(heldout, 50, False, workers=1)
    teacher = teacher_loaded.model.eval()
    results = _previous(args.out)
    if "unpruned_top1" not in results:
        results["unpruned_top1"] = evaluate(teacher, eval_loader).top1
    print(f"unpruned top-1 on {len(heldout)} held-out photos: {results['unpruned_top1']:.3f}", flush=True)
    example = torch.randn(1, 3, spec.input_size, spec.input_size)
    base_macs = count_cost(teacher, example).macs
    calibration = calibration_batches(data.calibration_set(), 32, 32, seed=0)
    mirror = not args.no_mirror
    recon_batches = fitting_batches(data.calibration_set(), args.reconstruct_images, 32, 0, mirror)
    recipe = f"{sum(len(b) for b in recon_batches) // (2 if mirror else 1)} photos" + (" + mirrors" if mirror else "")
    recipe += ", classifier at positions"  # rows before it fitted the pooled classifier on one vector per image
    recipe += ", residual blocks to their outputs"  # rows before it fitted a block's last layer to its own output
    kd_loader = make_loader(
        data.train.with_transform(train_transform(spec.input_size, spec.mean, spec.std, RECOVERY.crop_scale)),
        32,
        True,
        0,
        workers=1,
    )
    # --only: in the order given; commas inside a row's parentheses ("(4 rounds, default)") do not split
    rows = re.split(r",(?![^()]*\))", args.only) if args.only else [*ANCHORS, *OURS]
    if args.by == "latency" and not args.only:
        rows = [*ANCHORS, DEFAULT]  # the slow part is timing: only today's default of ours
    unknown = [name for name in rows if name not in ANCHORS and name not in OURS]
    if unknown:
        sys.exit(f"unknown rows {unknown}; rows: {[*ANCHORS, *OURS]}")
    progress = Progress(Console())
    head = classifier_module(teacher, spec)
    cost = _latency_cost(teacher, example, head, progress) if args.by == "latency" else None
    for target in (float(t) for t in args.targets.split(",")):
        for name in rows:
            if _done(results, name, args.by, target, recipe):
                continue
            torch.manual_seed(0)
            started = time.time()
            if name in OURS:
                loaded = load_model(WEIGHTS, arch="mobilenet_v2")
                rounds, inside = OURS[name]
                config = ShrinkConfig(
                    target=target,
                    by=args.by,
                    schedule="oneshot",
                    distill=True,
                    rounds=rounds,
                    reconstruct=inside,
                    reconstruct_images=args.reconstruct_images,
                    reconstruct_mirror=mirror,
                )
                result = shrink(loaded, config, data, progress=progress)
                model, kept = result.model, result.kept_outputs
                checks = result.report.latency["rounds"][-1]["checks"] if cost else None
            elif cost is not None:
                model, kept, checks = _anchor_at_latency(cost, teacher, example, head, name, target, calibration)
            else:
                model, kept = torch_pruning(teacher, example, head, name, target, calibration)
            row = {"method": name, "by": args.by, TARGET_KEY[args.by]: target}
            row["prune_s"] = round(time.time() - started, 1)
            if cost is not None:  # every row timed the same way, after pruning, against the unpruned model
                timed = cost.compare(teacher, model.eval())
                row.update(latency_ratio=round(timed.ratio, 4), latency_ms=round(timed.ms, 4), latency_checks=checks)
                row["latency_calls"] = [round(r, 4) for r in timed.calls]
                row["latency_noise"] = round(cost.noise, 4)
            row["reconstruction"] = recipe
            row["mobileprune"] = versions()["mobileprune"]  # rows of one file span commits
            row["mac_ratio"] = round(count_cost(model, example).macs / base_macs, 4)
            row["params_ratio"] = round(
                sum(p.numel() for p in model.parameters()) / sum(p.numel() for p in teacher.parameters()), 4
            )
            inside = OURS.get(name, (1, False))[1]  # shrink already reconstructed: no "pruned" column
            row["top1_pruned"] = None if inside else evaluate(model.eval(), eval_loader).top1
            recon = None if inside else recon_batches
            row.update(_recover(model, kept, teacher, recon, kd_loader, eval_loader, args.steps))
            results.setdefault("rows", []).append(row)
            print(row, flush=True)
            _write(args, results)
    _write(args, results)


def _latency_cost(teacher: torch.nn.Module, example: torch.Tensor, head: torch.nn.Module, progress: Progress):
    """The latency model `shrink --by latency` builds (LiteRT fp32, one thread, this machine's cached tables)."""
    model = copy.deepcopy(teacher)
    ignored = [dict(model.named_modules())[n] for n, m in teacher.named_modules() if m is head]
    groups = PruningGraph(model, example, ignored).groups
    offered = {"model": model, "example": example, "groups": groups, "progress": progress}
    return COST_MODELS.create("latency", offered=offered)


@dataclass
class _Pruned:
    model: torch.nn.Module
    kept: dict[str, list[int]]
    ratio: float  # predicted latency share


def _anchor_at_latency(cost, teacher, example, head, recipe: str, target: float, calibration):
    """A Torch-Pruning recipe held to the measured latency target exactly as shrink holds its allocations:
    solved to the tables' prediction, timed, re-aimed until the timing is within the same tolerance."""

    def predicted(model: torch.nn.Module) -> float:
        return cost.predict_model(model) / cost.baseline()

    def pruned_at(aim: float) -> _Pruned:
        model, kept = torch_pruning(teacher, example, head, recipe, aim, calibration, measure=predicted)
        return _Pruned(model, kept, predicted(model))

    found, checks = meet_measured_target(
        pruned_at, lambda c: cost.compare(teacher, c.model.eval()), target, cost.progress, cost.noise
    )
    return found.model, found.kept, checks


def _recover(model, kept, teacher, recon_batches, kd_loader, eval_loader, steps) -> dict:
    """The same recovery for every row: reconstruction (unless shrink did it: `recon_batches` None), then
    distillation; top-1 after each."""
    out = {}
    if recon_batches is not None:
        t = time.time()
        fits = reconstruct(model, teacher, refittable_layers(model), recon_batches, kept.get)
        out["reconstruct_s"] = round(time.time() - t, 1)
        out["reconstruction_error"] = [
            round(sum(f.error_before for f in fits) / len(fits), 4),
            round(sum(f.error_after for f in fits) / len(fits), 4),
        ]
    out["top1_reconstructed"] = evaluate(model.eval(), eval_loader).top1
    t = time.time()
    student = copy.deepcopy(model)
    Trainer(kd_loader, RECOVERY, teacher).train(student, steps, cosine=True)
    out["distill_s"] = round(time.time() - t, 1)
    out["distill_steps"] = steps
    out["top1_distilled"] = evaluate(student.eval(), eval_loader).top1
    return out


def _previous(path: Path) -> dict:
    """Rows already measured (a killed run goes on where it stopped)."""
    import json

    results = json.loads(path.read_text()) if path.exists() else {}
    for row in results.get("rows", []):
        row.setdefault("reconstruction", f"{results.get('reconstruct_images', 256)} photos")  # before mirrors
    results.pop("reconstruct_images", None)
    return results


def _done(results: dict, name: str, by: str, target: float, recipe: str) -> bool:
    rows = results.get("rows", [])
    return any((r["method"], *_target(r), r["reconstruction"]) == (name, by, target, recipe) for r in rows)


def _target(row: dict) -> tuple[str, float]:
    by = row.get("by", "macs")  # rows before --by latency were all MACs
    return by, row[TARGET_KEY[by]]


def _write(args, results: dict) -> None:
    results.update(
        protocol=__doc__.split("\n\n")[1],
        recovery={"steps": args.steps, "batch": 32, **RECOVERY.__dict__},
        versions=versions(),
        machine=machine_facts(),
    )
    write_json(args.out, results)
    _plot(results, args.out.with_suffix(".png"))


def _plot(results: dict, path: Path) -> None:
    plt = pyplot()
    rows = results.get("rows", [])
    latest = {_target(r): r["reconstruction"] for r in rows}  # rows are appended as measured
    panels = sorted(latest.items())  # compare within one recipe only: each target's latest (the JSON keeps all)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.6), squeeze=False)
    stages = (("top1_pruned", "pruned"), ("top1_reconstructed", "+ reconstruction"), ("top1_distilled", "+ distill"))
    for ax, ((by, target), recipe) in zip(axes[0], panels, strict=True):
        here = [r for r in rows if (_target(r), r["reconstruction"]) == ((by, target), recipe)]
        for s, (key, label) in enumerate(stages):
            values = [r[key] or 0.0 for r in here]
            ax.bar([i + (s - 1) * 0.27 for i in range(len(here))], values, 0.27, label=label)
        ax.axhline(results["unpruned_top1"], color="k", ls="--", lw=1, label="unpruned")
        names = [
            r["method"].replace("mobileprune ", "mp ").replace("compensated sensitivity", "compensated") for r in here
        ]
        ax.set_xticks(range(len(here)), names, rotation=25, ha="right")
        ax.set_ylim(0, 1)
        what = "MACs" if by == "macs" else "measured LiteRT latency"
        ax.set_title(f"MobileNetV2 at {target:g} of its {what}\nreconstruction on {recipe}", fontsize=10)
        ax.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
