"""kill -9 and `--resume` on real weights: MobileNetV2 on CIFAR-10, killed at three points, equals an unkilled run.

The shared ImageNet MobileNetV2 distilled on 2,000 CIFAR-10 training images at 96 px: sensitivity
allocation to 0.7 of the MACs, `--schedule layerwise` (retraining after every layer), reconstruction and one
epoch of fine-tuning, checkpoints every 10 steps. One run goes through; a second is killed (SIGKILL, by
tools/kill_at.py) inside the sensitivity pass, inside the layerwise schedule and inside the fine-tune,
resumed with `--resume` each time, and finished. Recorded: the weights' largest difference (0 = bit-exact),
the training steps each kill lost (what the resume had to redo) and the wall times.

`sparsify` the same way (`--part sparsify`): `--method gradual --sparsity 0.7` distilled for two epochs on
the same images, killed twice while its masks grow, and `--method lottery` (3 rounds, late rewinding),
killed in its first round after the rewind copy and in its third; also recorded: the checkpoint file's size.

Writes benchmarks/results/resume_mobilenet_v2.json (each part its own entry; `--part` re-runs one). Run:
`python benchmarks/resume_mobilenet_v2.py [--part shrink|sparsify]`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from mobileprune.atomic import write_json
from mobileprune.reporting.provenance import machine_facts, versions

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared"
EVERY = 10
SHRINK_KILLS = (("sensitivity", 10), ("layerwise", 37), ("finetune", 25))
# 1,800 images train (the CLI holds 10% out), 57 batches of 32, two epochs: 114 steps; gradual's masks grow
# 20 times in its first 86, lottery's 3 rounds take 38 each
SPARSIFY_RUNS = (
    ("gradual", [], (("gradual", 25), ("gradual", 33))),
    ("lottery", ["--method-option", "rewind_step=15"], (("lottery", 21), ("lottery", 67))),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/mobileprune-resume"))
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--part", choices=("all", "shrink", "sparsify"), default="all")
    args = ap.parse_args()
    data = _cifar_subset(args.work / "cifar", args.images)
    weights = ["--arch", "mobilenet_v2", "--input-size", "96", "--data", str(data), "--distill", "--batch-size", "32"]
    common = [*weights, "--checkpoint-every", str(EVERY), "--quiet", "--force"]
    path = HERE / "results" / "resume_mobilenet_v2.json"
    result = json.loads(path.read_text()) if path.exists() and args.part != "all" else {}
    if "parts" not in result:  # the file's first layout: the shrink part at its top level
        shrink_part = {k: result.pop(k) for k in list(result) if k not in ("what", "versions", "machine")}
        result = {"parts": {"shrink": shrink_part} if shrink_part else {}}
    result["what"] = __doc__.splitlines()[0]
    model = str(SHARED / "weights" / "mobilenet_v2_imagenet.pth")
    if args.part in ("all", "shrink"):
        command = [
            "shrink", model, *common, "--target", "0.7", "--by", "macs", "--schedule", "layerwise",
            "--steps-per-layer", "4", "--epochs", "1",
        ]  # fmt: skip
        result["parts"]["shrink"] = _kill_and_resume(command, SHRINK_KILLS, args.work / "shrink")
    if args.part in ("all", "sparsify"):
        for method, extra, kills in SPARSIFY_RUNS:
            command = ["sparsify", model, *common, "--sparsity", "0.7", "--method", method, "--epochs", "2", *extra]
            result["parts"][f"sparsify_{method}"] = _kill_and_resume(command, kills, args.work / method)
    result.update({"versions": versions(), "machine": machine_facts()})
    write_json(path, result)


def _kill_and_resume(command: list[str], kills: tuple[tuple[str, int], ...], work: Path) -> dict:
    """`command` once through, then again killed at each of `kills`, resumed, and finished: compared."""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    t = time.time()
    subprocess.run([sys.executable, "-m", "mobileprune", *command, "--out", str(work / "whole")], check=True, env=env)
    whole_s = time.time() - t
    rows, t, sizes = [], time.time(), []
    out = ["--out", str(work / "killed")]
    for n, (point, at) in enumerate(kills):
        resume = ["--resume"] if n else []
        runner = [sys.executable, str(ROOT / "tools" / "kill_at.py"), point, str(at)]
        res = subprocess.run([*runner, *command, *out, *resume], env=env, capture_output=True, text=True)
        file = work / "killed" / "checkpoint" / "state.pt"
        sizes.append(file.stat().st_size)
        state = torch.load(file, map_location="cpu", weights_only=True)
        killed_at = int(re.search(r"killed at step (\d+)", res.stderr).group(1))
        saved = state["trainer"]["steps_done"] if state["trainer"] else 0
        rows.append(
            {
                "point": point,
                "exit_code": res.returncode,
                "killed_at_step": killed_at,
                "checkpoint_step": saved,
                "steps_redone": killed_at - saved,
                "phases_done": list(state["done"]),
                "partial": list(state["partial"]),
            }
        )
        print(rows[-1], flush=True)
    subprocess.run([sys.executable, "-m", "mobileprune", *command, *out, "--resume"], check=True, env=env)
    killed_s = time.time() - t
    a = load_file(work / "whole" / "model.safetensors")
    b = load_file(work / "killed" / "model.safetensors")
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    part = {
        "command": "mobileprune " + " ".join(command),
        "checkpoint_every": EVERY,
        "kills": rows,
        "bit_exact": all(torch.equal(a[k], b[k]) for k in a) and a.keys() == b.keys(),
        "largest_weight_difference": worst,
        "same_plan": (work / "whole" / "plan.json").read_text() == (work / "killed" / "plan.json").read_text(),
        "largest_checkpoint_mb": round(max(sizes) / 1e6, 1),
        "uninterrupted_wall_s": round(whole_s, 1),
        "killed_and_resumed_wall_s": round(killed_s, 1),
    }
    masks = work / "whole" / "masks.safetensors"
    if masks.exists():
        ma, mb = load_file(masks), load_file(work / "killed" / "masks.safetensors")
        part["same_masks"] = ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)
    print({k: part[k] for k in ("bit_exact", "largest_weight_difference", "same_plan")}, flush=True)
    return part


def _cifar_subset(folder: Path, count: int) -> Path:
    """`count` CIFAR-10 training images, picked with a fixed seed, as an unlabeled flat folder."""
    train = folder / "train"
    if train.is_dir() and len(list(train.iterdir())) == count:
        return folder
    train.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(SHARED / "data" / "cifar10-jpeg.zip") as z:
        names = sorted(n for n in z.namelist() if n.startswith("train/") and n.endswith(".jpg"))
        for n, name in enumerate(random.Random(0).sample(names, count)):
            (train / f"{n:05d}.jpg").write_bytes(z.read(name))
    return folder


if __name__ == "__main__":
    main()
