"""App-ready .tflite in the real Android client: MediaPipe's ImageClassifier against PyTorch, held-out ImageNet.

Protocol (the accuracy issue's split): the shared ImageNet MobileNetV2 and its one-shot 0.5-MAC shrink
(default settings: sensitivity allocation, L1, reconstruction, all on the 500 odd-class photos, no
fine-tuning) are converted by `convert` to fp32 and int8 .tflite (int8 calibrated on 100 odd-class photos).
MediaPipe Tasks' `ImageClassifier` loads each file (its metadata gives normalisation and class names) and is
fed the 500 even-class photos as `mp.Image`s from their files, with the centre crop the model was trained
with as region of interest (Resize 256 → CenterCrop 224); MediaPipe resizes the region itself. PyTorch
scores the same files with the standard eval transform. Reported: top-1 of each, the share of photos where
MediaPipe's top-1 equals PyTorch's, and whether MediaPipe's class names are the ImageNet names; and, to tell
the file from the preprocessing, PyTorch fed MediaPipe's crop resized as MediaPipe resizes (bilinear, no
antialiasing) and its agreement with MediaPipe. Each int8 file is also made once more without the
requantization of its biases (export/tflite_bias.py), as litert-torch alone writes it: what that mend is worth.

Writes benchmarks/results/mediapipe_imagenet.json and .png. Run: `make bench-mediapipe` (about 15 min on 2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from protocol import WEIGHTS, build_split

from mobileprune import ShrinkConfig, load_model, save_output, shrink
from mobileprune.api import open_shrink_data
from mobileprune.atomic import write_json
from mobileprune.export import convert, mediapipe_client
from mobileprune.models.labels import class_names
from mobileprune.reporting.plots import pyplot, save_figure
from mobileprune.reporting.provenance import machine_facts, versions
from mobileprune.train.data import make_loader

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", type=Path, help="an existing imagenet_split.py output (default: build one)")
    ap.add_argument("--shrunk", type=Path, help="an existing 0.5-MAC shrink output (default: shrink now)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "mediapipe_imagenet.json")
    args = ap.parse_args()
    split = build_split(args.split)
    work = Path(tempfile.mkdtemp(prefix="mobileprune-mediapipe-"))
    unpruned = load_model(WEIGHTS, arch="mobilenet_v2")
    spec = unpruned.spec
    data, heldout = open_shrink_data(spec, split / "unlabeled", split / "heldout", distill=True)
    names = class_names(spec)
    rows, timings = [], {}
    models = {"unpruned": unpruned, "0.5 MACs one-shot": _shrunk(args.shrunk, unpruned, data, work, timings)}
    for model_name, loaded in models.items():
        torch_top1 = _pytorch_top1(loaded.model.eval(), heldout)
        torch_as_mediapipe = _pytorch_top1_mediapipe_preprocessing(loaded.model.eval(), heldout, spec)
        started = time.time()
        bundle = work / model_name.replace(" ", "_")
        results = convert(
            loaded, ["tflite"], bundle, data=split / "unlabeled", precisions=["fp32", "int8"], calibration_images=100
        )
        timings[f"convert {model_name}"] = round(time.time() - started, 1)
        with _converter_biases():  # the ablation: int8 as litert-torch stores its biases
            unmended = convert(
                loaded, ["tflite"], work / "unmended", data=split / "unlabeled", precisions=["int8"], force=True
            )[0]
        unmended.precision = "int8, converter's biases"
        for result, folder in [*((r, bundle) for r in results), (unmended, work / "unmended")]:
            predictions = _mediapipe_predictions(folder / result.file, heldout)
            labels = np.array([label for _, label in heldout.samples])
            mp_top1 = np.array([p.index for p in predictions])
            row = {
                "model": model_name,
                "precision": result.precision,
                "file_mb": result.size_mb,
                "convert_check": result.check,
                "notes": result.notes,
                "pytorch_top1": float((torch_top1 == labels).mean()),
                "mediapipe_top1": float((mp_top1 == labels).mean()),
                "agreement_with_pytorch": float((mp_top1 == torch_top1).mean()),
                # the same float model fed MediaPipe's crop + plain bilinear resize: what is left is the file
                "pytorch_top1_mediapipe_preprocessing": float((torch_as_mediapipe == labels).mean()),
                "agreement_same_preprocessing": float((mp_top1 == torch_as_mediapipe).mean()),
                "class_names_are_imagenet": all(p.name == names[p.index] for p in predictions),
                "example_prediction": {"file": heldout.samples[0][0].name, "class": predictions[0].name},
            }
            row["difference_points"] = round(100 * (row["mediapipe_top1"] - row["pytorch_top1"]), 1)
            rows.append(row)
            print(
                f"{model_name:>18} {result.precision}: PyTorch {row['pytorch_top1']:.3f}  MediaPipe "
                f"{row['mediapipe_top1']:.3f}  same top-1 {row['agreement_with_pytorch']:.3f}",
                flush=True,
            )
    result = {
        "protocol": __doc__.split("\n\n")[1],
        "heldout_photos": len(heldout),
        "standard_error_points": round(100 * float(np.sqrt(0.25 / len(heldout))), 1),
        "rows": rows,
        "seconds": timings,
        "versions": {**versions(), **_versions()},
        "machine": machine_facts(),
    }
    write_json(args.out, result)
    _plot(rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


def _shrunk(folder: Path | None, unpruned, data, work: Path, timings: dict):
    """The default one-shot 0.5-MAC shrink on the odd photos (or an existing output of it)."""
    if folder is not None:
        report = json.loads((folder / "report.json").read_text())
        timings["shrink 0.5 MACs (its report.json)"] = report["timings_s"]["total_s"]
        return load_model(folder)
    started = time.time()
    config = ShrinkConfig(target=0.5, by="macs", schedule="oneshot", distill=True, epochs=0)
    save_output(shrink(load_model(WEIGHTS, arch="mobilenet_v2"), config, data), work / "shrunk")
    timings["shrink 0.5 MACs"] = round(time.time() - started, 1)
    return load_model(work / "shrunk")


def _pytorch_top1(model: torch.nn.Module, heldout) -> np.ndarray:
    predictions = []
    with torch.no_grad():
        for batch in make_loader(heldout, 50, False, workers=1):
            predictions.append(model(batch.images).argmax(1).numpy())
    return np.concatenate(predictions)


def _pytorch_top1_mediapipe_preprocessing(model: torch.nn.Module, heldout, spec) -> np.ndarray:
    """PyTorch's top-1 on the region MediaPipe crops, resized as it does (bilinear, no antialiasing)."""
    import torch.nn.functional as F

    mean, std = torch.tensor(spec.mean).view(3, 1, 1), torch.tensor(spec.std).view(3, 1, 1)
    predictions = []
    with torch.no_grad():
        for file, _ in heldout.samples:
            with Image.open(file) as image:
                pixels = torch.from_numpy(np.asarray(image.convert("RGB"))).permute(2, 0, 1).float() / 255
            height, width = pixels.shape[1:]
            left, top, right, bottom = mediapipe_client.centre_crop(width, height)
            crop = pixels[:, round(top * height) : round(bottom * height), round(left * width) : round(right * width)]
            size = (spec.input_size, spec.input_size)
            x = F.interpolate(crop[None], size=size, mode="bilinear", align_corners=False, antialias=False)[0]
            predictions.append(int(model(((x - mean) / std)[None]).argmax(1)))
    return np.array(predictions)


def _mediapipe_predictions(path: Path, heldout) -> list[mediapipe_client.Prediction]:
    out = []
    with mediapipe_client.image_classifier(path) as classifier:
        for file, _ in heldout.samples:
            with Image.open(file) as image:
                width, height = image.size
            out.append(mediapipe_client.classify(classifier, file, mediapipe_client.centre_crop(width, height)))
    return out


def _versions() -> dict:
    from importlib import metadata

    return {name: metadata.version(name) for name in ("mediapipe", "litert-torch", "ai-edge-litert")}


@contextlib.contextmanager
def _converter_biases():
    """convert without tflite_bias.py's requantization: what litert-torch's file alone would score."""
    from mobileprune.export import tflite_bias

    keep = tflite_bias.requantize_biases
    tflite_bias.requantize_biases = lambda model: []
    try:
        yield
    finally:
        tflite_bias.requantize_biases = keep


def _plot(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 4))
    labels = [f"{r['model']}\n{r['precision']}" for r in rows]
    x = np.arange(len(rows))
    se = [np.sqrt(r["pytorch_top1"] * (1 - r["pytorch_top1"]) / 500) for r in rows]
    ax.bar(x - 0.2, [r["pytorch_top1"] for r in rows], 0.4, yerr=se, label="PyTorch (eval transform)")
    ax.bar(x + 0.2, [r["mediapipe_top1"] for r in rows], 0.4, yerr=se, label="MediaPipe ImageClassifier (.tflite)")
    for i, r in enumerate(rows):
        ax.text(i + 0.2, r["mediapipe_top1"] + 0.03, f"{r['agreement_with_pytorch']:.0%} same", ha="center", size=8)
    ax.set_xticks(x, labels)
    ax.set_ylabel("top-1, 500 held-out ImageNet photos")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("The converted files in Android's own classifier (MediaPipe Tasks)")
    save_figure(fig, path)


if __name__ == "__main__":
    main()
