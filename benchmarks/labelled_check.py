"""Does a labelled validation folder let `--retrain-check` see what the KL misses?

On a few hundred unlabeled photos the check judges a fine-tune by the KL divergence from the unpruned model
on held-out photos, and that KL fell in runs whose held-out top-1 fell (docs/accuracy-at-2x.md, "What the
held-out photos cannot see"). A user who labels a few photos can put them in `--data`'s val/ beside the
unlabeled train/, and the check then scores cross-entropy to those labels. This benchmark runs the same
shrink command twice on the odd half split as odd_dev_split.py splits it (A: 250 unlabeled training
photos; B: 250 validation photos), once with B unlabeled (flat: the check uses the KL) and once with B in
class folders (the check uses the labels); training images, pruning and fine-tune are the same, only the
check's measure differs. Both kept models, and the one-shot model of the same command, are scored on the
500 even-class photos (never seen by any run), with paired counts against the one-shot model.
Writes benchmarks/results/labelled_check.json.

    python benchmarks/labelled_check.py --split S [--target 0.7] [--epochs 6]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from odd_dev_split import DevScore, split_odd
from protocol import WEIGHTS, paired

import mobileprune
from mobileprune.artifacts.shrink_folder import load_output
from mobileprune.atomic import write_json
from mobileprune.reporting.provenance import machine_facts, versions

HERE = Path(__file__).resolve().parent


def data_folders(a: Path, b: Path, work: Path) -> dict[str, Path]:
    """Two --data folders with A as train/: B flat as val/ (no labels), and B's class folders as val/."""
    folders = {"kl": work / "check_kl", "labels": work / "check_labels"}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "train").exists():
            (folder / "train").symlink_to((a / "train").resolve())
    if not (folders["labels"] / "val").exists():
        folders["labels"].joinpath("val").symlink_to(b.resolve())
    flat = folders["kl"] / "val"
    for photo in b.glob("*/*"):
        if not (flat / photo.name).exists():
            flat.mkdir(exist_ok=True)
            (flat / photo.name).symlink_to(photo.resolve())
    return folders


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", type=Path, required=True, help="imagenet_split.py output (unlabeled/, heldout/)")
    ap.add_argument("--target", default="0.7", help="--by macs target")
    ap.add_argument("--epochs", default="6", help="the fine-tune the check judges (8 steps of 32 per epoch)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/mobileprune-odd-dev"))
    args = ap.parse_args()
    a, b = split_odd(args.split / "unlabeled" / "train", args.work)
    folders = data_folders(a, b, args.work)
    base = [sys.executable, "-m", "mobileprune", "shrink", str(WEIGHTS), "--arch", "mobilenet_v2", "--by", "macs"]
    base += ["--target", args.target, "--distill"]
    runs = {
        "one-shot": [*base, "--data", str(folders["labels"]), "--schedule", "oneshot", "--epochs", "0"],
        "checked by KL": [*base, "--data", str(folders["kl"]), "--epochs", args.epochs],
        "checked by labels": [*base, "--data", str(folders["labels"]), "--epochs", args.epochs],
    }
    teacher = mobileprune.load_model(str(WEIGHTS), arch="mobilenet_v2").model.eval()
    rows: dict[str, dict] = {}
    score = None
    for name, command in runs.items():
        out = args.work / name.replace(" ", "_")
        started = time.time()
        subprocess.run([*command, "--out", str(out), "--force", "--quiet"], check=True)
        wall = round(time.time() - started, 1)
        loaded = load_output(out)
        score = score or DevScore(args.split / "heldout", loaded.spec, teacher)
        report = json.loads((out / "report.json").read_text())
        rows[name] = score(loaded.model) | {
            "wall_s": wall,
            "command": report.get("command"),
            "check": report["retraining"].get("check"),
            "plan": json.loads((out / "plan.json").read_text()),
        }
        if name != "one-shot":
            lost, gained, z = paired(rows["one-shot"]["right"], rows[name]["right"])
            rows[name]["against_one_shot"] = {"right_only_one_shot": lost, "right_only_after": gained, "z": z}
        print(name, {k: v for k, v in rows[name].items() if k not in ("right", "plan", "check")}, flush=True)
    plans = [row.pop("plan") for row in rows.values()]
    kept = [
        load_output(args.work / name.replace(" ", "_")).model.state_dict()
        for name in ("checked by KL", "checked by labels")
    ]
    result = {
        "what": __doc__.splitlines()[0],
        "target": f"{args.target} of the MACs",
        "photos": {"A (train/, unlabeled)": len(list((a / "train").iterdir())), "B (val/)": len(list(b.glob("*/*")))},
        "scored_on": f"{len(score.y)} even-class photos (top-1; agreement and KL against the unpruned model)",
        "same_pruning_in_every_run": all(plan == plans[0] for plan in plans),
        "both_checks_kept_the_same_weights": all(torch.equal(kept[0][k], kept[1][k]) for k in kept[0]),
        "rows": rows,
        "versions": versions(),
        "machine": machine_facts(),
    }
    write_json(HERE / "results" / "labelled_check.json", result)


if __name__ == "__main__":
    main()
