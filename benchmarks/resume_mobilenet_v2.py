"""kill -9 and `--resume` on real weights: MobileNetV2 on CIFAR-10, killed at three points, equals an unkilled run.

The shared ImageNet MobileNetV2 distilled on 2,000 CIFAR-10 training images at 96 px: sensitivity
allocation to 0.7 of the MACs, `--schedule layerwise` (retraining after every layer), reconstruction and one
epoch of fine-tuning, checkpoints every 10 steps. One run goes through; a second is killed (SIGKILL, by
tools/kill_at.py) inside the sensitivity pass, inside the layerwise schedule and inside the fine-tune,
resumed with `--resume` each time, and finished. Recorded: the weights' largest difference (0 = bit-exact),
the training steps each kill lost (what the resume had to redo) and the wall times.

Writes benchmarks/results/resume_mobilenet_v2.json. Run: `python benchmarks/resume_mobilenet_v2.py`.
"""

from __future__ import annotations

import argparse
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
KILLS = (("sensitivity", 10), ("layerwise", 37), ("finetune", 25))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/mobileprune-resume"))
    ap.add_argument("--images", type=int, default=2000)
    args = ap.parse_args()
    data = _cifar_subset(args.work / "cifar", args.images)
    command = [
        "shrink", str(SHARED / "weights" / "mobilenet_v2_imagenet.pth"), "--arch", "mobilenet_v2",
        "--input-size", "96", "--target", "0.7", "--by", "macs", "--data", str(data), "--distill",
        "--schedule", "layerwise", "--steps-per-layer", "4", "--epochs", "1", "--batch-size", "32",
        "--checkpoint-every", str(EVERY), "--quiet", "--force",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    t = time.time()
    subprocess.run(
        [sys.executable, "-m", "mobileprune", *command, "--out", str(args.work / "whole")], check=True, env=env
    )
    whole_s = time.time() - t
    kills, t = [], time.time()
    out = ["--out", str(args.work / "killed")]
    for n, (point, at) in enumerate(KILLS):
        resume = ["--resume"] if n else []
        runner = [sys.executable, str(ROOT / "tools" / "kill_at.py"), point, str(at)]
        res = subprocess.run([*runner, *command, *out, *resume], env=env, capture_output=True, text=True)
        state = torch.load(args.work / "killed" / "checkpoint" / "state.pt", map_location="cpu", weights_only=True)
        killed_at = int(re.search(r"killed at step (\d+)", res.stderr).group(1))
        saved = state["trainer"]["steps_done"] if state["trainer"] else 0
        kills.append(
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
        print(kills[-1], flush=True)
    subprocess.run([sys.executable, "-m", "mobileprune", *command, *out, "--resume"], check=True, env=env)
    killed_s = time.time() - t
    a = load_file(args.work / "whole" / "model.safetensors")
    b = load_file(args.work / "killed" / "model.safetensors")
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    result = {
        "what": __doc__.splitlines()[0],
        "command": "mobileprune " + " ".join(command),
        "checkpoint_every": EVERY,
        "kills": kills,
        "bit_exact": all(torch.equal(a[k], b[k]) for k in a) and a.keys() == b.keys(),
        "largest_weight_difference": worst,
        "same_plan": (args.work / "whole" / "plan.json").read_text()
        == (args.work / "killed" / "plan.json").read_text(),
        "uninterrupted_wall_s": round(whole_s, 1),
        "killed_and_resumed_wall_s": round(killed_s, 1),
        "versions": versions(),
        "machine": machine_facts(),
    }
    write_json(HERE / "results" / "resume_mobilenet_v2.json", result)
    print({k: result[k] for k in ("bit_exact", "largest_weight_difference", "same_plan")})


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
