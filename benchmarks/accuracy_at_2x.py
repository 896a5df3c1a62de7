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

`--resolution auto` (or N): every row runs at the size `shrink --resolution auto` picks for its target (the
smallest multiple of 32 px whose MACs alone keep the target), the filters cut to the target of the 224-px
MACs, the teacher the unpruned model at that size (as the CLI's); plus "resolution only", the unpruned model
at that size.

Writes benchmarks/results/accuracy_at_2x.json and .png. Run: `make bench-accuracy` (about 75 min on 2 cores);
`python benchmarks/accuracy_at_2x.py --by latency --targets 0.5` for the measured 2x rows.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from protocol import WEIGHTS, build_split
from rich.console import Console

from mobileprune import ShrinkConfig, load_model, shrink
from mobileprune.api import cut_resolution, open_shrink_data
from mobileprune.atomic import write_json
from mobileprune.cli.options import resolution as parse_resolution
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
# a light cut (--resolution's filters keep 0.95-0.98) is out of reach of a uniform cut in multiples of 8:
# the same recipes with channels in ones, so they can land on the target
FINE = {f"{name} (round_to 1)": name for name in ("uniform_l1", "width")}
DEFAULT = "mobileprune compensated sensitivity (4 rounds, default)"
AUTO_DEFAULT = "mobileprune default (rounds auto)"
RESOLUTION_ONLY = "resolution only"  # the unpruned model at the row's size: nothing pruned
FULL_SIZE = 224  # px, the shared MobileNetV2's own size; rows without "resolution" ran at it
TARGET_KEY = {"macs": "target_macs", "latency": "target_latency"}
# rounds, and whether shrink reconstructs (then its sensitivity probes are compensated)
OURS = {
    "mobileprune zeroed-probe sensitivity (1 round)": (1, False),
    "mobileprune compensated sensitivity (4 rounds, default)": (4, True),
    "mobileprune compensated sensitivity (1 round)": (1, True),
    # --rounds auto as the CLI resolves it: 4 rounds at the deep cuts above, 1 for --resolution's light cut
    "mobileprune default (rounds auto)": ("auto", True),
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
    ap.add_argument(
        "--resolution",
        default="",
        help="auto or N px: every row runs at that size (auto: shrink --resolution auto's per target), filters "
        "cut to the target of the full-size MACs; adds the 'resolution only' row",
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
    full = _Setting.at(split, None, args)
    results = _previous(args.out)
    if "unpruned_top1" not in results:
        results["unpruned_top1"] = evaluate(full.teacher, full.eval_loader).top1
    print(
        f"unpruned top-1 on {len(full.eval_loader.dataset)} held-out photos: {results['unpruned_top1']:.3f}", flush=True
    )
    base_macs = count_cost(full.teacher, full.example).macs
    # --only: in the order given; commas inside a row's parentheses ("(4 rounds, default)") do not split
    rows = re.split(r",(?![^()]*\))", args.only) if args.only else [*ANCHORS, *OURS]
    if args.by == "latency" and not args.only:
        rows = [*ANCHORS, DEFAULT]  # the slow part is timing: only today's default of ours
    if args.resolution and not args.only:
        rows = [RESOLUTION_ONLY, *ANCHORS, *FINE, DEFAULT, AUTO_DEFAULT]
    if args.resolution and args.by == "latency":
        sys.exit("--resolution counts MACs: use it with --by macs")
    known = [RESOLUTION_ONLY, *ANCHORS, *FINE, *OURS]
    unknown = [name for name in rows if name not in known]
    if unknown:
        sys.exit(f"unknown rows {unknown}; rows: {known}")
    progress = Progress(Console())
    cost = _latency_cost(full.teacher, full.example, full.head, progress) if args.by == "latency" else None
    for target in (float(t) for t in args.targets.split(",")):
        here, filters = full, target
        if args.resolution:
            config, cut = cut_resolution(
                _unpruned(), ShrinkConfig(target, by="macs"), parse_resolution(args.resolution)
            )
            if cut is not None:
                here, filters = _Setting.at(split, cut.size, args), config.target
        for name in rows:
            if _done(results, name, args.by, target, here.recipe, here.size) or (
                name == RESOLUTION_ONLY and here is full
            ):
                continue
            torch.manual_seed(0)
            started = time.time()
            if name == RESOLUTION_ONLY:
                model, kept = copy.deepcopy(here.teacher), {}
            elif name in OURS:
                loaded = _unpruned(here.size)
                rounds, inside = OURS[name]
                config = ShrinkConfig(
                    target=filters,
                    by=args.by,
                    schedule="oneshot",
                    distill=True,
                    rounds=rounds,
                    reconstruct=inside,
                    reconstruct_images=args.reconstruct_images,
                    reconstruct_mirror=not args.no_mirror,
                )
                result = shrink(loaded, config, here.data, progress=progress)
                model, kept = result.model, result.kept_outputs
                checks = result.report.latency["rounds"][-1]["checks"] if cost else None
            elif cost is not None:
                model, kept, checks = _anchor_at_latency(
                    cost, here.teacher, here.example, here.head, name, target, here.calibration
                )
            else:
                recipe, round_to = (FINE[name], 1) if name in FINE else (name, 8)
                model, kept = torch_pruning(
                    here.teacher, here.example, here.head, recipe, filters, here.calibration, round_to=round_to
                )
            row = {"method": name, "by": args.by, TARGET_KEY[args.by]: target}
            if here.size != full.size:
                row["resolution"] = here.size  # px; every MAC ratio below is of the full-size model
            row["prune_s"] = round(time.time() - started, 1)
            if cost is not None:  # every row timed the same way, after pruning, against the unpruned model
                timed = cost.compare(full.teacher, model.eval())
                row.update(latency_ratio=round(timed.ratio, 4), latency_ms=round(timed.ms, 4), latency_checks=checks)
                row["latency_calls"] = [round(r, 4) for r in timed.calls]
                row["latency_noise"] = round(cost.noise, 4)
            row["reconstruction"] = here.recipe
            row["mobileprune"] = versions()["mobileprune"]  # rows of one file span commits
            row["mac_ratio"] = round(count_cost(model, here.example).macs / base_macs, 4)
            row["params_ratio"] = round(
                sum(p.numel() for p in model.parameters()) / sum(p.numel() for p in full.teacher.parameters()), 4
            )
            inside = OURS.get(name, (1, False))[1] or name == RESOLUTION_ONLY  # nothing (more) to reconstruct
            row["top1_pruned"] = None if inside else evaluate(model.eval(), here.eval_loader).top1
            recon = None if inside else here.recon_batches
            if name == RESOLUTION_ONLY:  # the teacher at this size is this model: distilling it changes nothing
                top1 = evaluate(model.eval(), here.eval_loader).top1
                row.update(top1_reconstructed=top1, top1_distilled=top1, distill_steps=0)
            else:
                row.update(_recover(model, kept, here.teacher, recon, here.kd_loader, here.eval_loader, args.steps))
            results.setdefault("rows", []).append(row)
            print(row, flush=True)
            _write(args, results)
    _write(args, results)


@dataclass
class _Setting:
    """Everything a row needs at one input size: the unpruned teacher at that size, the odd photos (allocation,
    reconstruction, distillation) and the held-out photos resized for it."""

    size: int
    teacher: torch.nn.Module
    head: torch.nn.Module
    example: torch.Tensor
    data: Any
    eval_loader: Any
    kd_loader: Any
    calibration: list[torch.Tensor]
    recon_batches: list[torch.Tensor]
    recipe: str

    @classmethod
    def at(cls, split: Path, size: int | None, args) -> _Setting:
        loaded = _unpruned(size)
        spec = loaded.spec
        data, heldout = open_shrink_data(spec, split / "unlabeled", split / "heldout", distill=True)
        mirror = not args.no_mirror
        recon = fitting_batches(data.calibration_set(), args.reconstruct_images, 32, 0, mirror)
        recipe = f"{sum(len(b) for b in recon) // (2 if mirror else 1)} photos" + (" + mirrors" if mirror else "")
        recipe += ", classifier at positions"  # rows before it fitted the pooled classifier on one vector per image
        recipe += ", residual blocks to their outputs"  # rows before it fitted a block's last layer to its output
        transform = train_transform(spec.input_size, spec.mean, spec.std, RECOVERY.crop_scale)
        teacher = loaded.model.eval()
        return cls(
            size=spec.input_size,
            teacher=teacher,
            head=classifier_module(teacher, spec),
            example=torch.randn(1, 3, spec.input_size, spec.input_size),
            data=data,
            eval_loader=make_loader(heldout, 50, False, workers=1),
            kd_loader=make_loader(data.train.with_transform(transform), 32, True, 0, workers=1),
            calibration=calibration_batches(data.calibration_set(), 32, 32, seed=0),
            recon_batches=recon,
            recipe=recipe,
        )


def _unpruned(size: int | None = None):
    """A fresh copy of the shared MobileNetV2, at `size` px (default: its own), for a row to prune in place."""
    return load_model(WEIGHTS, arch="mobilenet_v2", input_size=size)


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


def _done(results: dict, name: str, by: str, target: float, recipe: str, size: int) -> bool:
    rows = results.get("rows", [])
    wanted = (name, by, target, recipe, size)
    return any((r["method"], *_target(r), r["reconstruction"], r.get("resolution", FULL_SIZE)) == wanted for r in rows)


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
    latest = {_panel(r): r["reconstruction"] for r in rows}  # rows are appended as measured
    # compare within one recipe only: each target's latest (the JSON keeps all); full-size rows first
    panels = sorted(latest.items(), key=lambda item: (item[0][2] != FULL_SIZE, item[0][0] != "macs", item[0][1]))
    columns = min(3, len(panels))
    grid = (len(panels) + columns - 1) // columns
    fig, axes = plt.subplots(grid, columns, figsize=(7 * columns, 5.2 * grid), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    stages = (("top1_pruned", "pruned"), ("top1_reconstructed", "+ reconstruction"), ("top1_distilled", "+ distill"))
    for ax, ((by, target, size), recipe) in zip(axes.flat, panels, strict=False):  # the grid may have a spare cell
        here = [r for r in rows if (_panel(r), r["reconstruction"]) == ((by, target, size), recipe)]
        for s, (key, label) in enumerate(stages):
            values = [r[key] or 0.0 for r in here]
            ax.bar([i + (s - 1) * 0.27 for i in range(len(here))], values, 0.27, label=label)
        ax.axhline(results["unpruned_top1"], color="k", ls="--", lw=1, label="unpruned (224 px)")
        names = [
            r["method"].replace("mobileprune ", "mp ").replace("compensated sensitivity", "compensated") for r in here
        ]
        ax.set_xticks(range(len(here)), names, rotation=25, ha="right")
        ax.set_ylim(0, 1)
        what = "MACs" if by == "macs" else "measured LiteRT latency"
        at = f", run at {size} px" if size != FULL_SIZE else ""
        wrapped = textwrap.fill(f"reconstruction on {recipe}", 70)
        ax.set_title(f"MobileNetV2 at {target:g} of its {what}{at}\n{wrapped}", fontsize=9)
    handles, labels = axes.flat[0].get_legend_handles_labels()  # one legend: the bars are high in every panel
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=9)
    save_figure(fig, path, top=1 - 0.35 / fig.get_figheight())


def _panel(row: dict) -> tuple[str, float, int]:
    return (*_target(row), row.get("resolution", FULL_SIZE))


if __name__ == "__main__":
    main()
