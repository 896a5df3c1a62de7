"""The CLI path a user takes, on the held-out ImageNet protocol: one-shot vs `--epochs 20`, at 0.5 MACs and 0.84 params.

Runs `mobileprune shrink` on the shared MobileNetV2 with the 500 odd-class photos as unlabeled training
images (ODD/train, flat; the CLI holds 10% of them out for its own validation), then scores every output
folder on the 500 held-out even-class photos:

- `--by macs --target 0.5 --distill --schedule oneshot --epochs 0` and the same with `--epochs 20` (the
  default schedule and recovery), as the accuracy issue's item 4 asks, `--epochs 100` (the issue's whole
  30-minute recovery budget on a 2-core CPU; also with `--patience 10`), and both with `--rounds 1` (the
  default before `--rounds auto`);
- `--speedup 2 --schedule oneshot --epochs 0` (half the latency measured on LiteRT here), with and without
  `--rounds 1`;
- `--target 0.84 --distill --allocation uniform|sensitivity`, `--epochs 0` and `20` (item 3: does
  retraining win accuracy back at the gentle target?), and the same four with `--no-reconstruct` (is the
  least-squares re-fit doing retraining's job?);
- `--distill-loss kl` (plain KL) against the centred default: `--epochs 20` at 0.5 MACs, and at 0.7 MACs
  one-shot and `--epochs 3` with each loss;
- `--no-student-dropout` (the pruned model's dropout off while it is distilled) at 0.5 MACs with
  `--epochs 20`;
- `--resolution 160` with the one-shot 0.5-MACs command (the result runs at 160 px; the target counts
  against the 224-px model);
- the one-shot 0.5-MACs command given only the first 63, 125 or 250 of the odd photos (a seeded order):
  how many unlabeled photos does a user need?
- `sparsify --sparsity 0.5 --method magnitude --distill --epochs 2`, with and without `--retrain-check`,
  and at two lower learning rates than sparsify's default 1e-4 (3e-5, shrink's default, and 1e-5).

`--device cuda` runs reconstruction and retraining on a GPU (the sensitivity pass stays on the CPU).
`--evaluate-only` scores folders made earlier (e.g. on a GPU machine) without running shrink again.
Writes benchmarks/results/cli_recovery.json, and cli_recovery_checks.png: the validation loss after every
epoch of each row whose fine-tune `--retrain-check` scored epoch by epoch, and cli_recovery_photos.png: the
one-shot 0.5-MACs top-1 (and wall time) against the number of photos.
Run: `python benchmarks/cli_recovery.py --split S [--device cuda]
[--only RUN,...]` (`--only` keeps the other rows of the JSON).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

from protocol import WEIGHTS

from mobileprune.api import open_image_folder
from mobileprune.artifacts.shrink_folder import load_output
from mobileprune.atomic import write_json
from mobileprune.models.labels import class_ids
from mobileprune.reporting.plots import draw_retrain_check, pyplot, save_figure
from mobileprune.reporting.provenance import machine_facts, versions
from mobileprune.train.data import make_loader
from mobileprune.train.loop import evaluate

HERE = Path(__file__).resolve().parent
RUNS = {
    "macs0.5_oneshot": ["--by", "macs", "--target", "0.5", "--schedule", "oneshot", "--epochs", "0"],
    "macs0.5_epochs20": ["--by", "macs", "--target", "0.5", "--epochs", "20"],
    # the accuracy issue's whole recovery budget (30 minutes on this 2-core CPU): 100 epochs of the 450 photos
    "macs0.5_epochs100": ["--by", "macs", "--target", "0.5", "--epochs", "100"],
    # the same, stopped after 10 epochs without a better validation score
    "macs0.5_epochs100_patience10": ["--by", "macs", "--target", "0.5", "--epochs", "100", "--patience", "10"],
    # twice the default's rounds: does re-measuring more often still pay at 2x?
    "macs0.5_oneshot_rounds8": [
        "--by",
        "macs",
        "--target",
        "0.5",
        "--schedule",
        "oneshot",
        "--epochs",
        "0",
        "--rounds",
        "8",
    ],
    # channels chosen by structured layer-wise OBS (what the consumers' re-fit leaves) instead of filter L1
    "macs0.5_oneshot_obs": ["--by", "macs", "--target", "0.5", "--schedule", "oneshot", "--epochs", "0"]
    + ["--criterion", "obs"],
    # the speed-up a user feels: half the latency measured on LiteRT (fp32, one thread) on this machine
    "latency0.5_oneshot": ["--speedup", "2", "--schedule", "oneshot", "--epochs", "0"],
    "params0.84_uniform_oneshot": ["--target", "0.84", "--allocation", "uniform", "--epochs", "0"],
    "params0.84_uniform_epochs20": ["--target", "0.84", "--allocation", "uniform", "--epochs", "20"],
    "params0.84_sensitivity_oneshot": ["--target", "0.84", "--allocation", "sensitivity", "--epochs", "0"],
    "params0.84_sensitivity_epochs20": ["--target", "0.84", "--allocation", "sensitivity", "--epochs", "20"],
}
# one allocation (the default before --rounds auto), for comparison with auto's 4 rounds at 2x
RUNS |= {f"{name}_rounds1": [*options, "--rounds", "1"] for name, options in RUNS.items() if "0.5" in name}
# item 3 without reconstruction: does retraining win back when the least-squares re-fit has not done its job?
RUNS |= {f"{name}_noreconstruct": [*options, "--no-reconstruct"] for name, options in RUNS.items() if "0.84" in name}
# plain KL instead of the centred default: the odd-photo dev split (odd_dev_split.py) found it the one variant
# that did not lower dev top-1; and the 0.7-MACs case where a short distillation lowered top-1, with each loss
RUNS |= {
    "macs0.5_epochs20_kl": [*RUNS["macs0.5_epochs20"], "--distill-loss", "kl"],
    "macs0.5_epochs20_no_student_dropout": [*RUNS["macs0.5_epochs20"], "--no-student-dropout"],
    "macs0.7_oneshot": ["--by", "macs", "--target", "0.7", "--schedule", "oneshot", "--epochs", "0"],
    "macs0.7_epochs3": ["--by", "macs", "--target", "0.7", "--epochs", "3"],
    "macs0.7_epochs3_kl": ["--by", "macs", "--target", "0.7", "--epochs", "3", "--distill-loss", "kl"],
    # fewer pixels first (resolution_vs_filters.py): 160 px, the filters take the rest of the 0.5 cut
    "macs0.5_oneshot_resolution160": [*RUNS["macs0.5_oneshot"], "--resolution", "160"],
    # the two commands and the 0.7 one with the size chosen by shrink (the smallest multiple of 32 that fits)
    "macs0.5_oneshot_resolution_auto": [*RUNS["macs0.5_oneshot"], "--resolution", "auto"],
    "macs0.5_epochs20_resolution_auto": [*RUNS["macs0.5_epochs20"], "--resolution", "auto"],
    "macs0.7_oneshot_resolution_auto": ["--by", "macs", "--target", "0.7", "--schedule", "oneshot", "--epochs", "0"]
    + ["--resolution", "auto"],
    "macs0.7_epochs20_resolution_auto": ["--by", "macs", "--target", "0.7", "--epochs", "20", "--resolution", "auto"],
}
# sparsify's masked fine-tune after one-shot magnitude pruning, judged by --retrain-check, and without it
SPARSIFY_RUNS = {
    "sparsify0.5_magnitude_epochs2": ["--sparsity", "0.5", "--method", "magnitude", "--epochs", "2"],
    "sparsify0.5_magnitude_epochs2_nocheck": ["--sparsity", "0.5", "--method", "magnitude", "--epochs", "2"]
    + ["--no-retrain-check"],
}
# is sparsify's default learning rate (1e-4) too high for distillation on a few hundred photos?
SPARSIFY_RUNS |= {
    f"sparsify0.5_magnitude_epochs2_lr{lr}": [*SPARSIFY_RUNS["sparsify0.5_magnitude_epochs2"], "--lr", lr]
    for lr in ("3e-5", "1e-5")
}
RUNS |= SPARSIFY_RUNS
# how many photos does a user need? The one-shot 2x command on nested, seeded subsets of the 500 odd photos
PHOTO_COUNTS = (63, 125, 250)
RUNS |= {f"macs0.5_oneshot_photos{n}": RUNS["macs0.5_oneshot"] for n in PHOTO_COUNTS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", type=Path, required=True, help="imagenet_split.py output (unlabeled/, heldout/)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/mobileprune-cli-recovery"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--evaluate-only", action="store_true")
    ap.add_argument("--machine-note", default="", help="where the shrink runs ran, when not here")
    ap.add_argument("--wall", action="append", default=[], help="NAME=SECONDS measured where shrink ran")
    ap.add_argument("--only", default="", help="comma-separated runs (default: all); other rows stay in the JSON")
    ap.add_argument("--plot-only", action="store_true", help="redraw cli_recovery_checks.png from the JSON")
    args = ap.parse_args()
    out = HERE / "results" / "cli_recovery.json"
    if args.plot_only:
        plot_checks(json.loads(out.read_text())["rows"], out.with_name("cli_recovery_checks.png"))
        return
    walls: dict[str, float] = {k: float(v) for k, v in (w.split("=", 1) for w in args.wall)}
    names = args.only.split(",") if args.only else list(RUNS)
    rows = json.loads(out.read_text())["rows"] if args.only and out.exists() else {}
    ran_on = args.machine_note or f"this machine, --device {args.device}"
    if not args.evaluate_only:
        for name, options in ((n, RUNS[n]) for n in names):
            verb = "sparsify" if name in SPARSIFY_RUNS else "shrink"
            command = [sys.executable, "-m", "mobileprune", verb, str(WEIGHTS), "--arch", "mobilenet_v2"]
            command += [*options, "--data", str(photos_of(name, args.split, args.work)), "--distill"]
            command += ["--device", args.device]
            started = time.time()
            subprocess.run([*command, "--out", str(args.work / name), "--force", "--quiet"], check=True)
            walls[name] = round(time.time() - started, 1)
    for name in names:
        folder = args.work / name
        loaded = load_output(folder)
        spec = loaded.spec
        ids = class_ids(spec)
        heldout = open_image_folder(args.split / "heldout", spec.input_size, spec.mean, spec.std, classes=ids)
        acc = evaluate(loaded.model.eval(), make_loader(heldout, 50, False, workers=1))
        report = json.loads((folder / "report.json").read_text())
        rows[name] = {
            "heldout_top1": acc.top1,
            "heldout_top5": acc.top5,
            "images": acc.images,
            "ratios": report["ratios"],
            "latency_final_check": report.get("latency", {}).get("final_check"),  # --speedup: timed vs unpruned
            "latency_noise": report.get("latency", {}).get("noise"),  # the unpruned model against itself
            "shrink_timings_s": report["timings_s"],
            "wall_s": walls.get(name),
            "fine_tune_steps": report["retraining"]["steps"],
            "retrain_check": report["retraining"].get("check"),  # the validation images' verdict on the fine-tune
            "photos": len(list(photos_of(name, args.split, args.work).rglob("*.*"))),  # before the 10% held out
            "command": report.get("command"),
            "mobileprune": report.get("versions", {}).get("mobileprune"),  # rows of one file span commits
            "shrink_ran_on": ran_on,
        }
        print(name, rows[name]["heldout_top1"], flush=True)
    result = {
        "what": __doc__.splitlines()[0],
        "rows": rows,
        "versions": versions(),
        "machine": machine_facts(),
    }
    write_json(out, result)
    plot_checks(rows, out.with_name("cli_recovery_checks.png"))
    plot_photos(rows, out.with_name("cli_recovery_photos.png"))


def photos_of(name: str, split: Path, work: Path) -> Path:
    """A run's --data folder: the 500 odd photos, or for a `_photosN` run the first N of them in a seeded
    order (so each smaller set is inside the larger ones, and the curve measures how many, not which)."""
    unlabeled = split / "unlabeled"
    count = re.search(r"_photos(\d+)$", name)
    if count is None:
        return unlabeled
    n = int(count.group(1))
    order = sorted(p.name for p in (unlabeled / "train").iterdir())
    random.Random(0).shuffle(order)
    subset = work / f"photos{n}"
    for photo in order[:n]:
        link = subset / "train" / photo
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to((unlabeled / "train" / photo).resolve())
    return subset


def plot_photos(rows: dict[str, dict], path: Path) -> None:
    """Held-out top-1 of the one-shot 2x command against how many unlabeled photos it was given."""
    names = ["macs0.5_oneshot", *(f"macs0.5_oneshot_photos{n}" for n in PHOTO_COUNTS)]
    points = sorted(
        (rows[n]["photos"], rows[n]["heldout_top1"], rows[n]["wall_s"]) for n in names if "photos" in rows.get(n, {})
    )
    if len(points) < 2:
        return
    plt = pyplot()
    fig, (top, wall) = plt.subplots(1, 2, figsize=(10, 3.6))
    photos = [p for p, _, _ in points]
    top1 = [t for _, t, _ in points]
    top.errorbar(photos, top1, yerr=[(t * (1 - t) / 500) ** 0.5 for t in top1], marker="o", capsize=3)
    top.set_xscale("log", base=2)
    top.set_xticks(photos, [str(p) for p in photos])
    top.set_xlabel("unlabeled odd photos given to --data (10% held out for validation)")
    top.set_ylabel("top-1 on the 500 even photos")
    top.set_title("shrink --by macs --target 0.5, one-shot (±1 SE)")
    wall.plot(photos, [w for _, _, w in points], marker="o", color="tab:orange")
    wall.set_xscale("log", base=2)
    wall.set_xticks(photos, [str(p) for p in photos])
    wall.set_xlabel("unlabeled odd photos")
    wall.set_ylabel("wall time of shrink (s, 2 CPU cores)")
    save_figure(fig, path)


def plot_checks(rows: dict[str, dict], path: Path) -> None:
    """One panel per row whose check scored more than the end of its fine-tune."""
    curves = {
        n: r["retrain_check"] for n, r in rows.items() if len((r.get("retrain_check") or {}).get("history", [])) > 1
    }
    if not curves:
        return
    plt = pyplot()
    across = min(2, len(curves))
    down = -(-len(curves) // across)
    fig, axes = plt.subplots(down, across, figsize=(5.6 * across, 3.4 * down), squeeze=False)
    for ax, (name, check) in zip(axes.flat, curves.items(), strict=False):
        draw_retrain_check(ax, check, f"{name}: held-out top-1 {rows[name]['heldout_top1']:.3f}")
    for ax in list(axes.flat)[len(curves) :]:
        ax.set_visible(False)
    fig.suptitle("KL from the unpruned model on the 50 validation odd photos (+ mirrors), by epoch", fontsize=10)
    save_figure(fig, path, top=0.94)


if __name__ == "__main__":
    main()
