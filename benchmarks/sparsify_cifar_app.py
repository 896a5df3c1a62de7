"""Accuracy vs sparsity on the CIFAR-10 app model: every sparsify method against the best structured point.

The app model (the shared MobileNetV2 fine-tuned on CIFAR-10 at 96 px; class_damage.py makes and caches it)
is sparsified to 0.5/0.7/0.8/0.9 of its sparsifiable weights (1×1 convs and the classifier) by magnitude,
gradual, lottery (3 rounds, rewound to the app model's weights), obs (128 calibration images) and hybrid
(shrink to 0.7 of the parameters, then gradual; the shrink is done once and each sparsity sparsifies its
output folder, which is what `--method hybrid` does in one command); the structured point is `shrink` to 0.5
of the MACs with its defaults (sensitivity, L1, reconstruction). Every one gets the same labelled fine-tune:
50 steps of 32 of the same 8,000 training images, AdamW lr 3e-4, cosine (a CPU budget: 20 runs here).
Scored on 1,000 held-out test images (a fixed sample; standard error about 1.3 points at 0.8). The x axis
counts removed filters' weights with zeroed ones (`of_original`), so structured, sparse and hybrid points
share it; score = (top-1 + sparsity) / 2.

Writes benchmarks/results/sparsify_cifar_app.{json,png}; a killed run goes on where it stopped. Run:
`python benchmarks/sparsify_cifar_app.py` (it makes the app model first when it is not cached)."""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

from protocol import CIFAR_WORK, cifar_app

from mobileprune import ShrinkConfig, load_model, save_output, shrink
from mobileprune.atomic import write_json
from mobileprune.reporting.plots import pyplot, save_figure
from mobileprune.reporting.provenance import machine_facts, versions
from mobileprune.sparsify.config import SparsifyConfig
from mobileprune.sparsify.masks import prunable_weights
from mobileprune.sparsify.run import sparsify
from mobileprune.train.data import make_loader, open_image_folder
from mobileprune.train.loop import TrainConfig, evaluate

HERE = Path(__file__).resolve().parent
SIZE, STEPS, TEST_IMAGES = 96, 50, 1000
METHODS = ("magnitude", "gradual", "lottery", "obs", "hybrid")
SPARSITIES = (0.5, 0.7, 0.8, 0.9)
STRUCTURED = "structured (shrink 0.5 MACs)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=CIFAR_WORK)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "sparsify_cifar_app.json")
    args = ap.parse_args()
    app, app_args, data, root = cifar_app(args.work)
    data.val = None  # scored once per point on the fixed test sample below, not on all 10,000 at every stage
    test = open_image_folder(root / "test", SIZE, app.spec.mean, app.spec.std)
    test.samples = random.Random(0).sample(test.samples, TEST_IMAGES)
    loader = make_loader(test, 100, False, workers=1)
    done = json.loads(args.out.read_text()) if args.out.exists() else {}
    rows = done.get("rows", [])
    original = prunable_weights(app.model)
    epochs = STEPS / math.ceil(len(data.train) / 32)
    if not done:
        rows.append(_row("dense", 0.0, 0.0, None, evaluate(app.model, loader).top1, 0.0))
        t = time.time()
        config = ShrinkConfig(target=0.5, by="macs", epochs=epochs, train=TrainConfig(lr=3e-4))
        shrunk = shrink(load_model(str(args.work / "cifar_app.pt"), **app_args), config, data, test)
        structured = 1 - prunable_weights(shrunk.model) / original
        oneshot = shrunk.report.accuracy.after_pruning.top1
        top1 = shrunk.report.accuracy.final().top1
        rows.append(_row(STRUCTURED, structured, structured, oneshot, top1, time.time() - t))
        print(rows, flush=True)
        _save(args.out, rows)
    for sparsity in SPARSITIES:  # every method at a sparsity before the next sparsity
        for method in METHODS:
            if any(r["method"] == method and r["sparsity"] == sparsity for r in rows):
                continue
            t = time.time()
            if method == "hybrid":
                loaded = load_model(str(_structured_step(args.work, app_args, data)))
                left = prunable_weights(loaded.model)
                needed = (sparsity * original - (original - left)) / left  # zeros still needed, of what is left
                method_name, options, target = "gradual", {}, needed
            else:
                loaded = load_model(str(args.work / "cifar_app.pt"), **app_args)
                method_name, target = method, sparsity
                options = {"rounds": 3} if method == "lottery" else {}
            config = SparsifyConfig(
                target, method=method_name, epochs=epochs, train=TrainConfig(lr=3e-4), method_options=options
            )
            result = sparsify(loaded, config, data)  # scored once, at the end (CPU time)
            top1 = evaluate(result.model, loader).top1
            rows.append(_row(method, sparsity, result.report.sparsity["of_original"], None, top1, time.time() - t))
            rows[-1]["steps"] = result.report.retraining["steps"]
            print(rows[-1], flush=True)
            _save(args.out, rows)
    _plot(rows, args.out.with_suffix(".png"))


def _structured_step(work: Path, app_args: dict, data) -> Path:
    """hybrid's first step, once: the app model shrunk to 0.7 of its parameters (no fine-tune; it comes after)."""
    folder = work / "hybrid_structured_0.7"
    if not (folder / "report.json").exists():
        result = shrink(load_model(str(work / "cifar_app.pt"), **app_args), ShrinkConfig(target=0.7), data)
        save_output(result, folder, force=True)
    return folder


def _row(method: str, sparsity: float, of_original: float, oneshot: float | None, top1: float, wall: float) -> dict:
    return {
        "method": method,
        "sparsity": sparsity,
        "of_original": round(of_original, 4),
        "top1_one_shot": oneshot,
        "top1": round(top1, 4),
        "standard_error": round(math.sqrt(top1 * (1 - top1) / TEST_IMAGES), 4),
        "score": round((top1 + of_original) / 2, 4),
        "wall_s": round(wall, 1),
    }


def _save(path: Path, rows: list[dict]) -> None:
    write_json(
        path,
        {
            "what": __doc__.splitlines()[0],
            "fine_tune": f"{STEPS} labelled steps of 32, AdamW lr 3e-4, cosine, 8000 training images",
            "test_images": TEST_IMAGES,
            "rows": rows,
            "best_score": max(rows, key=lambda r: r["score"]),
            "versions": versions(),
            "machine": machine_facts(),
        },
    )


def _plot(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, (ax, score) = plt.subplots(1, 2, figsize=(11, 4.2))
    dense = next(r for r in rows if r["method"] == "dense")
    for method in METHODS:
        picked = sorted((r for r in rows if r["method"] == method), key=lambda r: r["of_original"])
        xs = [r["of_original"] for r in picked]
        ax.errorbar(xs, [r["top1"] for r in picked], [r["standard_error"] for r in picked], marker="o", label=method)
        score.plot(xs, [r["score"] for r in picked], marker="o", label=method)
    for r in rows:
        if r["method"].startswith("structured"):
            ax.plot(r["of_original"], r["top1"], "k*", markersize=12, label=r["method"])
            score.plot(r["of_original"], r["score"], "k*", markersize=12)
    ax.axhline(dense["top1"], color="gray", linestyle="--", label=f"dense {dense['top1']:.3f}")
    ax.set_xlabel("sparsity (zeroed + removed weights, of the unpruned model's)")
    ax.set_ylabel(f"top-1, {TEST_IMAGES} CIFAR-10 test images")
    score.set_xlabel("sparsity")
    score.set_ylabel("score = (top-1 + sparsity) / 2")
    ax.legend(fontsize=7)
    score.legend(fontsize=7)
    fig.suptitle("MobileNetV2 CIFAR-10 app model: unstructured methods vs structured, same fine-tune")
    save_figure(fig, path, top=0.92)


if __name__ == "__main__":
    main()
