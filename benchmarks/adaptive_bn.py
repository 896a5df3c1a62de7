"""Batch-norm re-estimation after pruning (EagleEye's adaptive BN): does it help a model with real batch norm?

The accuracy issue asks for it "with a model that has real batch norm". The shared MobileNetV2 has its batch
norms folded into the convs (identity statistics), and no pretrained model with real statistics can be
downloaded here, so this benchmark makes one that computes the same function: every BN gets the running mean
and variance of its input measured on the user's odd-class photos, and the scale and shift that undo them
(γ = √(σ² + ε), β = μ), so the unpruned network is unchanged (checked: largest logit difference, and the
same held-out top-1) while its statistics are real ones a pruned network can disagree with.

Each row prunes that model to a MAC ratio one-shot, then re-estimates every BN's statistics on the odd photos
(train-mode forward passes, no gradients, cumulative average over 450 photos + mirrors; γ, β and every weight
kept) and scores the held-out even-class photos before and after. Rows: Torch-Pruning's uniform L1 and
global Taylor (no reconstruction), mobileprune's one-shot default (reconstruction on) and the same with
`reconstruct=False`. For the folded model itself re-estimation would replace the identity statistics with
real ones under identity γ, β, changing what every layer computes: it must not be applied there, which is
why shrink does not do it (retraining keeps BN frozen too).

    python benchmarks/adaptive_bn.py --split S [--targets 0.5,0.7]

Writes benchmarks/results/adaptive_bn.{json,png}.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from protocol import WEIGHTS, build_split

from mobileprune import ShrinkConfig, load_model, shrink
from mobileprune.api import open_shrink_data
from mobileprune.atomic import write_json
from mobileprune.models import classifier_module
from mobileprune.prune.cost import count_cost
from mobileprune.prune.recover import fitting_batches
from mobileprune.reporting.plots import pyplot, save_figure
from mobileprune.reporting.provenance import machine_facts, versions
from mobileprune.train.data import calibration_batches, make_loader
from mobileprune.train.loop import evaluate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anchors import torch_pruning  # noqa: E402

HERE = Path(__file__).resolve().parent
ROWS = ("uniform_l1", "global_taylor", "mobileprune default", "mobileprune, no reconstruction")


@torch.no_grad()
def unfold(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """Give every BN the statistics of its input on `batches` and the affine that undoes them (same function)."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    sums: dict[nn.Module, list] = {m: [0, 0, 0] for m in norms}

    def record(module, inputs, _):
        x = inputs[0].double()
        s = sums[module]
        s[0] = s[0] + x.sum((0, 2, 3))
        s[1] = s[1] + (x * x).sum((0, 2, 3))
        s[2] = s[2] + x.numel() / x.shape[1]

    hooks = [m.register_forward_hook(record) for m in norms]
    model.eval()
    for x in batches:
        model(x)
    for hook in hooks:
        hook.remove()
    for m in norms:
        total, squares, n = sums[m]
        mean = total / n
        var = (squares / n - mean * mean).clamp_min(0)
        # eval-mode BN is y = a·x + c; keep a and c with the new statistics: γ' = a·√(σ² + ε), β' = c + a·μ
        slope = m.weight.double() / (m.running_var.double() + m.eps).sqrt()
        shift = m.bias.double() - m.running_mean.double() * slope
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
        m.weight.copy_(slope * (var + m.eps).sqrt())
        m.bias.copy_(shift + slope * mean)


@torch.no_grad()
def re_estimate(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """EagleEye's adaptive BN: fresh running statistics from train-mode passes; nothing else changes."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over all batches
        m.train()
    for x in batches:
        model(x)
    model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", type=Path, help="an existing imagenet_split.py output (default: build one)")
    ap.add_argument("--targets", default="0.5,0.7")
    args = ap.parse_args()
    split = build_split(args.split)
    loaded = load_model(WEIGHTS, arch="mobilenet_v2")
    spec = loaded.spec
    data, heldout = open_shrink_data(spec, split / "unlabeled", split / "heldout", distill=True)
    eval_loader = make_loader(heldout, 50, False, workers=1)
    fitting = fitting_batches(data.calibration_set(), 1024, 32, 0, mirror=True)  # 450 photos + mirrors
    folded = loaded.model.eval()
    unfolded = copy.deepcopy(folded)
    unfold(unfolded, fitting)
    probe = fitting[0]
    with torch.no_grad():
        gap = float((unfolded(probe) - folded(probe)).abs().max())
    results: dict = {
        "what": __doc__.splitlines()[0],
        "unfolded_max_logit_difference": gap,
        "unpruned_top1": {
            "folded": evaluate(folded, eval_loader).top1,
            "unfolded": evaluate(unfolded, eval_loader).top1,
        },
        "rows": [],
    }
    broken = copy.deepcopy(folded)  # what re-estimating would do to the folded model itself
    re_estimate(broken, fitting)
    results["folded_model_re_estimated_top1"] = evaluate(broken, eval_loader).top1
    print(results, flush=True)
    example = torch.randn(1, 3, spec.input_size, spec.input_size)
    base = count_cost(unfolded, example).macs
    calibration = calibration_batches(data.calibration_set(), 32, 32, seed=0)
    for target in (float(t) for t in args.targets.split(",")):
        for name in ROWS:
            torch.manual_seed(0)
            started = time.time()
            if name.startswith("mobileprune"):
                again = load_model(WEIGHTS, arch="mobilenet_v2")
                again.model = copy.deepcopy(unfolded)
                config = ShrinkConfig(
                    target=target, by="macs", schedule="oneshot", distill=True, reconstruct="no recon" not in name
                )
                model = shrink(again, config, data).model
            else:
                model, _ = torch_pruning(
                    unfolded, example, classifier_module(unfolded, spec), name, target, calibration
                )
            row = {"method": name, "target_macs": target, "prune_s": round(time.time() - started, 1)}
            row["mac_ratio"] = round(count_cost(model, example).macs / base, 4)
            row["top1_pruned"] = evaluate(model.eval(), eval_loader).top1
            started = time.time()
            re_estimate(model, fitting)
            row["re_estimate_s"] = round(time.time() - started, 1)
            row["top1_re_estimated"] = evaluate(model, eval_loader).top1
            results["rows"].append(row)
            print(row, flush=True)
    results.update(versions=versions(), machine=machine_facts())
    out = HERE / "results" / "adaptive_bn.json"
    write_json(out, results)
    plot(results, out.with_suffix(".png"))


def plot(results: dict, path: Path) -> None:
    plt = pyplot()
    targets = sorted({r["target_macs"] for r in results["rows"]})
    fig, axes = plt.subplots(1, len(targets), figsize=(6.5 * len(targets), 4.4), squeeze=False)
    for ax, target in zip(axes[0], targets, strict=True):
        rows = [r for r in results["rows"] if r["target_macs"] == target]
        xs = range(len(rows))
        ax.bar([x - 0.2 for x in xs], [r["top1_pruned"] for r in rows], 0.4, label="pruned")
        ax.bar([x + 0.2 for x in xs], [r["top1_re_estimated"] for r in rows], 0.4, label="+ BN re-estimated")
        ax.axhline(results["unpruned_top1"]["unfolded"], color="k", ls="--", lw=1, label="unpruned")
        ax.set_xticks(list(xs), [r["method"] for r in rows], rotation=20, ha="right")
        ax.set_ylim(0, 1)
        ax.set_title(f"MobileNetV2 (BN statistics made real) at {target:g} of its MACs, one-shot", fontsize=10)
        ax.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
