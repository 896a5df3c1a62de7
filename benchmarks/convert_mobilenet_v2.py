"""Convert the shared ImageNet MobileNetV2 and its 0.84 shrink (one-shot, sensitivity) to every format.

On the accuracy protocol: int8 files (TFLite, ONNX, ExecuTorch) are calibrated on 100 of the odd-class
(unlabeled) photos and `convert` checks every file on 64 others; top-1 of each runnable format is measured
on the 500 even-class photos, next to PyTorch's. int8 TFLite is also calibrated, for comparison, on 100
CIFAR-10 images. Each runtime's int8 file is timed against its fp32 file (interleaved, 1 and 2 threads;
ExecuTorch's thread pool is fixed at the core count; the original model's bundle).
Writes benchmarks/results/convert_mobilenet_v2.json. Run with a venv that has the converters (`make test`
installs them): `.venv/bin/python benchmarks/convert_mobilenet_v2.py [--split S]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from protocol import SHARED, WEIGHTS, build_split

from mobileprune import ShrinkConfig, load_model, save_output, shrink
from mobileprune.export import FORMATS, convert
from mobileprune.export.convert import file_input
from mobileprune.models.labels import class_ids
from mobileprune.reporting.provenance import versions
from mobileprune.train.data import make_loader, open_image_folder

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--split", type=Path, help="an existing imagenet_split.py output (default: build one)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "convert_mobilenet_v2.json")
    args = ap.parse_args()
    split = build_split(args.split)
    work = Path(tempfile.mkdtemp(prefix="mobileprune-convert-"))
    weights = WEIGHTS
    original = load_model(weights, arch="mobilenet_v2")
    spec = original.spec
    heldout = open_image_folder(split / "heldout", spec.input_size, spec.mean, spec.std, classes=class_ids(spec))
    images, labels = [], []
    for batch in make_loader(heldout, 50, False, workers=1):
        images.append(batch.images.numpy())
        labels.append(batch.labels.numpy())
    images, labels = np.concatenate(images), np.concatenate(labels)

    odd = sorted((split / "unlabeled" / "train").iterdir())
    calibrated = {"imagenet": _calibration_folder(work / "calib-imagenet", odd[:100], odd[100:164])}
    with zipfile.ZipFile(SHARED / "data" / "cifar10-jpeg.zip") as zf:
        cifar_train = [n for n in zf.namelist() if n.startswith("train/") and n.endswith(".jpg")]
        cifar_test = [n for n in zf.namelist() if n.startswith("test/") and n.endswith(".jpg")]
        picks = cifar_train[::500][:100] + cifar_test[::1000][:64]
        zf.extractall(work / "cifar", picks)
    calibrated["cifar"] = _calibration_folder(
        work / "calib-cifar",
        [work / "cifar" / n for n in picks[:100]],
        [work / "cifar" / n for n in picks[100:]],
    )

    torch.manual_seed(0)
    shrunk = shrink(load_model(weights, arch="mobilenet_v2"), ShrinkConfig(target=0.84, calibration_images=32))
    save_output(shrunk, work / "shrunk")
    models = {"original": original, "shrunk-0.84": load_model(work / "shrunk")}

    rows = []
    for label, loaded in models.items():
        bundle = work / f"bundle-{label}"
        started = time.time()
        results = convert(
            loaded, FORMATS.names(), bundle, precisions=["fp32", "fp16", "int8"], data=calibrated["imagenet"]
        )
        for r in results:
            r.notes.append("calibrated on 100 odd-class photos" if r.precision == "int8" else "")
        cifar_results = convert(
            loaded, ["tflite"], work / f"bundle-{label}-cifar", precisions=["int8"], data=calibrated["cifar"]
        )
        for r in cifar_results:
            r.file = f"../bundle-{label}-cifar/{r.file}"
            r.notes.append("calibrated on 100 CIFAR-10 images (out of domain)")
        results += cifar_results
        with torch.no_grad():
            reference = np.concatenate(
                [loaded.model(torch.from_numpy(images[i : i + 50])).numpy() for i in range(0, len(images), 50)]
            )
        row = {
            "model": label,
            "params": sum(p.numel() for p in loaded.model.parameters()),
            "convert_s": round(time.time() - started, 1),
            "top1": {"pytorch": float((reference.argmax(1) == labels).mean())},
            "formats": [],
        }
        for r in results:
            entry = {
                "format": r.format,
                "file": r.file,
                "precision": r.precision,
                "size_mb": r.size_mb,
                "check": r.check,
                "seconds": r.seconds,
                "notes": [n for n in r.notes if n],
            }
            # measure every file this machine can run, including ones that failed the check
            exporter = FORMATS.create(r.format)
            fed = file_input(exporter, None, None).feed(images, loaded.spec)  # what the file takes (app-ready)
            outputs = exporter.run(bundle / r.file, fed) if r.file else "not written"
            if not isinstance(outputs, str):
                entry["top1"] = float((outputs.argmax(1) == labels).mean())
                entry["max_abs_diff_on_images"] = float(np.abs(outputs - reference).max())
                entry["top1_agreement_with_pytorch"] = float((outputs.argmax(1) == reference.argmax(1)).mean())
            row["formats"].append(entry)
        if label == "original":
            row["int8_speed"] = _int8_speed(bundle, work / "speed")
        rows.append(row)
        print(json.dumps(row))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "convert shared MobileNetV2 (original and 0.84 one-shot shrink) to every format",
                "eval": f"top-1 on the {len(images)} even-class (held-out) photos, Resize 256 / CenterCrop 224",
                "calibration": "int8: 100 odd-class photos; convert's checks: 64 other odd-class photos",
                "runs": rows,
                "machine": {
                    "platform": platform.platform(),
                    **versions(),
                    **{k: v for n in FORMATS.names() for k, v in FORMATS.create(n).versions().items()},
                },
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


def _int8_speed(bundle: Path, work: Path) -> list[dict]:
    """Each runtime's int8 file against its fp32 file, interleaved (`bench` pairs files of the same name,
    so each precision gets a folder of links named as the fp32 file)."""
    from mobileprune.bench.measure import BenchConfig, bench
    from mobileprune.bench.models import BenchModel

    files = {"fp32": [], "int8": []}
    for name in ("model.tflite", "model.onnx", "model.pte"):
        stem, suffix = name.split(".")
        int8 = bundle / f"{stem}.int8.{suffix}"
        if (bundle / name).exists() and int8.exists():
            for precision, source in (("fp32", bundle / name), ("int8", int8)):
                link = work / precision / name
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(source.resolve())
                files[precision].append(link)
    # the fp32 files a second time: the noise, a model against itself in the same interleaved run
    models = [BenchModel(precision, paths) for precision, paths in files.items()]
    models.append(BenchModel("fp32 again", files["fp32"]))
    result = bench(models, BenchConfig(threads=[1, 2], runs=100, min_seconds=3.0))
    speedups = [
        {"runtime": s.runtime, "threads": s.threads, "against": s.baseline, "model": s.model, "speedup": s.speedup}
        for s in result.speedups
    ]
    return speedups + [m.to_json() for m in result.measurements] + [{"not timed": n} for n in result.skipped]


def _calibration_folder(root: Path, calibration: list[Path], check: list[Path]) -> Path:
    """root/train (calibration images) and root/val (check images) as symlinks: what `convert --data` reads."""
    for split, paths in (("train", calibration), ("val", check)):
        (root / split).mkdir(parents=True)
        for i, path in enumerate(paths):
            (root / split / f"{i:04d}{path.suffix}").symlink_to(path.resolve())
    return root


if __name__ == "__main__":
    main()
