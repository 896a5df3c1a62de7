"""What pruning broke, on real weights: per-class damage and pruning-identified exemplars (`compare`).

1. ImageNet (the accuracy issue's protocol): the shared MobileNetV2 against its one-shot 0.5-MAC shrink
   (default settings on the 500 odd-class photos, no fine-tuning) and that shrink's app-ready int8 .tflite
   (calibrated on 100 odd-class photos), judged on the 500 even-class photos. One photo per class, so
   every per-class number is flagged as noise: the PIE set and the thumbnails are what this half shows.
2. The CIFAR-10 "app model" (the shared MobileNetV2 fine-tuned on CIFAR-10 train at 96 px, as the sweep
   benchmark does; cached in --work) against its 0.5-MAC shrink (sensitivity allocation, L1, one-shot, then
   --steps of labelled fine-tuning), judged on the 10,000 CIFAR-10 test images (1000 per class).
3. `report` of the ImageNet shrink with the comparison, rendered by headless Chromium to a PNG.

Writes benchmarks/results/class_damage_imagenet/ and class_damage_cifar/ (compare.json, pie.csv, pie.png,
classes.png), report_imagenet.html and report_imagenet.png. Run: `make bench-damage`.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import time
from pathlib import Path

import torch
from protocol import CIFAR_LOAD_ARGS, CIFAR_SIZE, CIFAR_WORK, WEIGHTS, build_split, cifar_root, make_cifar_app

from mobileprune import ShrinkConfig, load_model, save_output, shrink
from mobileprune.api import compare, open_shrink_data, write_comparison
from mobileprune.artifacts import read_report
from mobileprune.atomic import write_json
from mobileprune.export import convert
from mobileprune.reporting.html_report import write_report
from mobileprune.reporting.provenance import machine_facts, versions
from mobileprune.train.data import open_data
from mobileprune.train.loop import TrainConfig

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", type=Path, help="an existing imagenet_split.py output (default: build one)")
    ap.add_argument("--shrunk", type=Path, help="an existing ImageNet 0.5-MAC shrink output (default: shrink now)")
    ap.add_argument("--work", type=Path, default=CIFAR_WORK)
    ap.add_argument("--steps", type=int, default=300, help="labelled fine-tuning steps of the CIFAR shrink")
    ap.add_argument("--only", choices=("imagenet", "cifar"), default=None)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    if args.only in (None, "imagenet"):
        imagenet(args, timings)
    if args.only in (None, "cifar"):
        cifar(args, timings)
    record = RESULTS / "class_damage.json"  # parts run separately (--only) keep each other's timings
    earlier = json.loads(record.read_text())["seconds"] if record.exists() else {}
    write_json(record, {"seconds": {**earlier, **timings}, "versions": versions(), "machine": machine_facts()})


def imagenet(args, timings: dict) -> None:
    split = build_split(args.split)
    shrunk = args.shrunk or args.work / "imagenet_shrunk"
    if not (shrunk / "report.json").exists():
        started = time.time()
        base = load_model(WEIGHTS, arch="mobilenet_v2")
        data, _ = open_shrink_data(base.spec, split / "unlabeled", None, distill=True)
        config = ShrinkConfig(target=0.5, by="macs", schedule="oneshot", distill=True, epochs=0)
        save_output(shrink(base, config, data), shrunk)
        timings["imagenet shrink"] = round(time.time() - started, 1)
    bundle = args.work / "imagenet_bundle"
    if not (bundle / "model.int8.tflite").exists():
        started = time.time()
        shutil.rmtree(bundle, ignore_errors=True)
        convert(load_model(shrunk), ["tflite"], bundle, data=split / "unlabeled", precisions=["int8"], check=False)
        timings["imagenet int8 convert"] = round(time.time() - started, 1)
    started = time.time()
    models = [str(WEIGHTS), str(shrunk), str(bundle / "model.int8.tflite")]
    result = compare(models, split / "heldout", load_args={"arch": "mobilenet_v2"})
    result.models[0]["label"], result.models[1]["label"] = "mobilenet_v2 (shared weights)", "0.5 MACs one-shot"
    result.models[2]["label"] = "0.5 MACs one-shot, int8 .tflite"
    out = write_comparison(result, RESULTS / "class_damage_imagenet", force=True)
    timings["imagenet compare"] = round(time.time() - started, 1)
    _summary("ImageNet", result)
    write_report(read_report(shrunk), RESULTS / "report_imagenet.html", out)
    _screenshot(RESULTS / "report_imagenet.html", RESULTS / "report_imagenet.png")


def cifar(args, timings: dict) -> None:
    root = cifar_root(args.work)
    app = args.work / "cifar_app.pt"
    app_args = CIFAR_LOAD_ARGS
    spec = load_model("mobilenet_v2", **app_args).spec
    data = open_data(root, CIFAR_SIZE, spec.mean, spec.std)
    made = make_cifar_app(args.work)
    if made is not None:
        timings["cifar fine-tune (1200 steps of 32)"] = made
    pruned = args.work / "cifar_shrunk"
    if not (pruned / "report.json").exists():
        started = time.time()
        data.train.samples = random.Random(0).sample(data.train.samples, 8000)  # epochs of a small set
        data.val.samples = random.Random(0).sample(data.val.samples, 1000)  # shrink's own quick evaluations
        epochs = args.steps * 32 / len(data.train.samples)
        config = ShrinkConfig(target=0.5, by="macs", schedule="oneshot", epochs=epochs, train=TrainConfig(lr=3e-4))
        save_output(shrink(load_model(app, **app_args), config, data), pruned)
        timings[f"cifar shrink 0.5 MACs + {args.steps} steps"] = round(time.time() - started, 1)
    started = time.time()
    names = sorted(p.name for p in (root / "test").iterdir() if p.is_dir())
    result = compare([str(app), str(pruned)], root / "test", labels=names, load_args=app_args)
    result.models[0]["label"], result.models[1]["label"] = "CIFAR-10 app model", f"0.5 MACs + {args.steps} steps"
    write_comparison(result, RESULTS / "class_damage_cifar", force=True)
    timings["cifar compare (10,000 test images)"] = round(time.time() - started, 1)
    _summary("CIFAR-10", result)


def _summary(name: str, result) -> None:
    print(f"{name}: {result.images} images, PIE {len(result.pie)}", flush=True)
    for m in result.models:
        print(f"  {m['label']}: top-1 {m['top1']:.3f}, same top-1 as first {m['agreement_with_first']:.3f}")
    for c in result.classes[:10]:
        print(f"  {c.name}: {c.top1_before:.3f} -> {c.top1_after:.3f} ({c.images} images)")


def _screenshot(page: Path, png: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        print("no chromium: report screenshot skipped")
        return
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,2400"]
    subprocess.run([chromium, *flags, f"--screenshot={png}", page.resolve().as_uri()], capture_output=True, timeout=120)


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
