"""Tuning recovery without touching the even half: the odd photos split into the user's and a labelled dev set.

The accuracy protocol keeps the even-class photos for top-1 only, so no recovery setting may be chosen on
them; the label-free check shrink has (KL to the unpruned model on held-out odd photos) cannot see every
loss of top-1 (README, "What the held-out photos cannot see"). This benchmark splits the 500 odd-class
photos, seeded, into A (250: the user's unlabeled photos, which shrink prunes, reconstructs and distils on)
and B (250, labelled by their class folder: development top-1, never fitted on), prunes one-shot on A with
the CLI, then runs each distillation variant from the same one-shot model with the product's `Trainer`, and
scores every model on B: top-1, agreement with the unpruned model, KL from it, and paired counts against the
one-shot model (McNemar's z). Writes benchmarks/results/odd_dev_split.{json,png}.

    python benchmarks/odd_dev_split.py --split S [--target 0.7] [--steps 48] [--variants base,kl,...]

`--variants` runs only those; the JSON keeps an earlier run's other rows when this run's one-shot model got
the same dev photos right with the same target and steps (they compare), and drops them otherwise.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from protocol import WEIGHTS, paired

import mobileprune
from mobileprune.artifacts.shrink_folder import load_output
from mobileprune.atomic import write_json
from mobileprune.models.labels import class_ids
from mobileprune.reporting.provenance import machine_facts, versions
from mobileprune.train.data import make_loader, open_data, open_image_folder, train_transform
from mobileprune.train.loop import TrainConfig, Trainer

HERE = Path(__file__).resolve().parent
# each a change to the CLI's default distillation (centered KL, T=2, AdamW 3e-5, cosine, crops >= 50%)
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "kl": {"distill_loss": "kl"},
    "crop1": {"crop_scale": 1.0},
    "T1": {"temperature": 1.0},
    "lr1e-5": {"lr": 1e-5},
    "mixup": {"mixup": 0.2},
    "nodrop": {},  # the classifier's dropout off while distilling
    "bias_lr1e-4": {"lr": 1e-4},  # only the biases (BN folded into them) train: ~1% of the parameters
    "bias_lr1e-3": {"lr": 1e-3},
}


def split_odd(unlabeled: Path, work: Path, seed: int = 1) -> tuple[Path, Path]:
    """A (flat, unlabeled) and B (a folder per wnid) as symlinks to the odd photos, half each."""
    names = sorted(p.name for p in unlabeled.iterdir())
    random.Random(seed).shuffle(names)
    a, b = work / "A", work / "B"
    for i, name in enumerate(names):
        dest = a / "train" / name if i < len(names) // 2 else b / name.split("_")[0] / name
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to((unlabeled / name).resolve())
    return a, b


class DevScore:
    """Top-1 on B's labels, agreement with and KL from the unpruned model, per photo for pairing."""

    def __init__(self, b: Path, spec, teacher: torch.nn.Module):
        images = open_image_folder(b, spec.input_size, spec.mean, spec.std, classes=class_ids(spec))
        batches = list(make_loader(images, 50, False, workers=1))
        self.x = torch.cat([batch.images for batch in batches])
        self.y = torch.cat([batch.labels for batch in batches])
        self.teacher = self._logits(teacher)

    @torch.no_grad()
    def _logits(self, model: torch.nn.Module) -> torch.Tensor:
        model.eval()
        return torch.cat([model(self.x[i : i + 50]) for i in range(0, len(self.x), 50)])

    def __call__(self, model: torch.nn.Module) -> dict:
        out = self._logits(model)
        kl = F.kl_div(F.log_softmax(out, 1), F.log_softmax(self.teacher, 1), log_target=True, reduction="batchmean")
        right = out.argmax(1) == self.y
        return {
            "top1": round(float(right.float().mean()), 4),
            "agreement": round(float((out.argmax(1) == self.teacher.argmax(1)).float().mean()), 4),
            "kl": round(float(kl), 4),
            "right": right.tolist(),
        }


def distil(pruned: torch.nn.Module, teacher: torch.nn.Module, a: Path, spec, name: str, steps: int) -> torch.nn.Module:
    """`steps` of the CLI's distillation with the variant's change, from a copy of the one-shot model, on the
    photos of A the CLI trains on (it holds 10% out)."""
    torch.manual_seed(0)
    config = TrainConfig(distill=True, **VARIANTS[name])
    student = copy.deepcopy(pruned)
    if name == "nodrop":
        for module in student.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    if name.startswith("bias"):  # the optimiser skips parameters that get no gradient
        for parameter_name, parameter in student.named_parameters():
            parameter.requires_grad_(parameter_name.endswith("bias"))
    data = open_data(a, spec.input_size, spec.mean, spec.std)
    images = data.train.with_transform(train_transform(data.size, data.mean, data.std, config.crop_scale))
    Trainer(make_loader(images, 32, True, 0, 1), config, teacher).train(student, steps, cosine=True)
    return student.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", type=Path, required=True, help="imagenet_split.py output (unlabeled/train)")
    ap.add_argument("--target", default="0.7", help="--by macs target of the one-shot shrink")
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--work", type=Path, default=Path("/tmp/mobileprune-odd-dev"))
    args = ap.parse_args()
    a, b = split_odd(args.split / "unlabeled" / "train", args.work)
    folder = args.work / f"macs{args.target}_oneshot"
    started = time.time()
    command = [sys.executable, "-m", "mobileprune", "shrink", str(WEIGHTS), "--arch", "mobilenet_v2", "--by", "macs"]
    command += ["--target", args.target, "--data", str(a), "--distill", "--schedule", "oneshot", "--epochs", "0"]
    subprocess.run([*command, "--out", str(folder), "--force", "--quiet"], check=True)
    shrink_s = round(time.time() - started, 1)
    teacher = mobileprune.load_model(str(WEIGHTS), arch="mobilenet_v2").model.eval()
    loaded = load_output(folder)
    score = DevScore(b, loaded.spec, teacher)
    rows = {"one-shot": score(loaded.model)}
    print("one-shot", {k: v for k, v in rows["one-shot"].items() if k != "right"}, flush=True)
    rows |= earlier_rows(HERE / "results" / "odd_dev_split.json", rows["one-shot"], args)
    for name in args.variants.split(","):
        t = time.time()
        student = distil(loaded.model, teacher, a, loaded.spec, name, args.steps)
        rows[name] = score(student) | {"seconds": round(time.time() - t, 1), "settings": VARIANTS[name]}
        lost, gained, z = paired(rows["one-shot"]["right"], rows[name]["right"])
        rows[name]["against_one_shot"] = {"right_only_one_shot": lost, "right_only_after": gained, "z": z}
        print(name, {k: v for k, v in rows[name].items() if k != "right"}, flush=True)
    result = {
        "what": __doc__.splitlines()[0],
        "target": f"{args.target} of the MACs",
        "steps": args.steps,
        "photos": {"A (the user's: pruned, reconstructed, distilled on)": len(list((a / "train").iterdir()))}
        | {"B (dev top-1 only)": len(score.y)},
        "shrink_s": shrink_s,
        "command": " ".join(command[2:]),
        "rows": rows,
        "versions": versions(),
        "machine": machine_facts(),
    }
    write_json(HERE / "results" / "odd_dev_split.json", result)
    plot(rows, HERE / "results" / "odd_dev_split.png", args)


def earlier_rows(path: Path, one_shot: dict, args) -> dict:
    """The variants of an earlier run that this one does not re-run, if it started from the same one-shot
    model (the same photos right on B) with the same steps; else none of them (they would not compare)."""
    if not path.exists():
        return {}
    earlier = json.loads(path.read_text())
    rows = earlier["rows"]
    same = earlier["steps"] == args.steps and earlier["target"] == f"{args.target} of the MACs"
    if not same or rows["one-shot"]["right"] != one_shot["right"]:
        print("the earlier results started from another one-shot model or step count: not kept", flush=True)
        return {}
    return {name: row for name, row in rows.items() if name != "one-shot" and name not in args.variants.split(",")}


def plot(rows: dict, path: Path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    fig, (top, kl) = plt.subplots(1, 2, figsize=(10, 3.8))
    top.bar(names, [rows[n]["top1"] for n in names], color=["grey"] + ["tab:blue"] * (len(names) - 1))
    top.axhline(rows["one-shot"]["top1"], color="grey", lw=0.8, ls="--")
    low = min(rows[n]["top1"] for n in names)
    top.set_ylim(low - 0.05, max(rows[n]["top1"] for n in names) + 0.03)
    top.set_title("top-1 on B (250 labelled odd photos, SE ~ 0.03)")
    kl.bar(names, [rows[n]["kl"] for n in names], color=["grey"] + ["tab:orange"] * (len(names) - 1))
    kl.set_title("KL from the unpruned model on B (lower = closer)")
    for ax in (top, kl):
        ax.tick_params(axis="x", rotation=45)
    fig.suptitle(f"{args.target} of the MACs one-shot on A, then {args.steps} distillation steps per variant")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
