"""Core ML int8 (weight compression) for the shared ImageNet MobileNetV2 and its shrinks: size, and top-1 to expect.

Core ML files run only on macOS, so this machine cannot score the int8 `.mlpackage` itself. What it can do:
1. read the file back and show the scheme: every int8 weight, dequantized (int8 x its channel's scale), against
   the same weight in the fp16 file (its `const` of the same name): error within half a quantization step,
   scales of max |w| / 127 per output channel;
2. apply that scheme to PyTorch's own weights (per output channel, symmetric, tensors over coremltools'
   2048-element threshold; per-output-channel scaling commutes with folding batch norm into the conv, so
   it is the same rounding as the file's) and measure top-1 on the 500 held-out even-class photos.
The simulated numbers leave out fp16 activations; the convert benchmark has fp16 on the other runtimes.

    .venv/bin/python benchmarks/coreml_int8.py [--split S] [--shrunk LABEL=FOLDER ...]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from protocol import WEIGHTS, build_split, paired

from mobileprune import ShrinkConfig, load_model, save_output, shrink
from mobileprune.export import convert
from mobileprune.models.labels import class_ids
from mobileprune.reporting.provenance import versions
from mobileprune.train.data import make_loader, open_image_folder

HERE = Path(__file__).resolve().parent
THRESHOLD = 2048  # coremltools compresses weights with more elements than this (OpLinearQuantizerConfig default)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--split", type=Path, help="an existing imagenet_split.py output (default: build one)")
    ap.add_argument("--shrunk", action="append", default=[], help="LABEL=FOLDER: a shrink output to add")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "coreml_int8.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    split = build_split(args.split)
    work = Path(tempfile.mkdtemp(prefix="mobileprune-coreml-int8-"))
    original = load_model(WEIGHTS, arch="mobilenet_v2")
    spec = original.spec
    heldout = open_image_folder(split / "heldout", spec.input_size, spec.mean, spec.std, classes=class_ids(spec))
    batches = list(make_loader(heldout, 50, False, workers=1))

    torch.manual_seed(0)
    shrunk = shrink(load_model(WEIGHTS, arch="mobilenet_v2"), ShrinkConfig(target=0.84, calibration_images=32))
    save_output(shrunk, work / "shrunk")
    models = {"original": original, "shrunk-0.84": load_model(work / "shrunk")}
    for item in args.shrunk:
        label, _, folder = item.partition("=")
        models[label] = load_model(folder)

    rows = []
    for label, loaded in models.items():
        started = time.time()
        fp16, int8 = convert(loaded, ["coreml"], work / f"bundle-{label}", precisions=["fp16", "int8"])
        file_scheme = read_back(work / f"bundle-{label}" / fp16.file, work / f"bundle-{label}" / int8.file)
        model = loaded.model.eval()
        simulated, tensors = int8_weights_in_pytorch(model)
        right = correct(model, batches)
        right_int8 = correct(simulated, batches)
        only_fp32, only_int8, z = paired(right, right_int8)
        rows.append(
            {
                "model": label,
                "source": loaded.source,
                "mb": {"fp16": fp16.size_mb, "int8": int8.size_mb},
                "zipped_mb": {"fp16": fp16.zip_mb, "int8": int8.zip_mb},
                "int8_weights_in_file": int8.details["compressed_weights"],
                "int8_weights_simulated": tensors,
                "file_scheme": file_scheme,
                "top1_pytorch": round(float(np.mean(right)), 4),
                "top1_int8_weights_simulated": round(float(np.mean(right_int8)), 4),
                "paired": {"right_only_fp32": only_fp32, "right_only_int8": only_int8, "z": z},
                "check": int8.check,
                "seconds": round(time.time() - started, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "what": __doc__.split("\n\n")[0],
        "protocol": "top-1 on the 500 even-class (held-out) photos; shrink-0.84 is shrink's default, one-shot",
        "rows": rows,
        "versions": versions(),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": 2},
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


def read_back(fp16_file: Path, int8_file: Path) -> dict:
    """Every int8 weight in `int8_file` against the same layer's weight in the fp16 file (the files' conv and
    linear ops paired in program order): the worst error in quantization steps, and how far each channel's
    scale is from max |w| / 127."""
    from coremltools.converters.mil.frontend.milproto.load import load as load_mil
    from coremltools.models import MLModel

    def weight_producers(path: Path) -> list:
        model = MLModel(str(path), skip_model_load=True)
        spec = model.get_spec()
        program = load_mil(spec, specification_version=spec.specificationVersion, file_weights_dir=model.weights_dir)
        ops = [op for f in program.functions.values() for op in f.operations]
        return [op.weight.op for op in ops if op.op_type in ("conv", "linear")]

    worst_steps, worst_scale, matched = 0.0, 0.0, 0
    for plain, op in zip(weight_producers(fp16_file), weight_producers(int8_file), strict=True):
        if op.op_type != "constexpr_affine_dequantize":
            continue
        data, scale = op.quantized_data.val.astype(np.float32), op.scale.val.astype(np.float32)
        original = plain.outputs[0].val.astype(np.float32)
        matched += 1
        axis = int(op.axis.val)
        shape = [-1 if d == axis else 1 for d in range(data.ndim)]
        step = scale.reshape(shape)
        error = np.abs(data * step - original)
        steps = np.divide(error, step, out=np.where(error > 0, np.inf, 0.0).astype(np.float32), where=step > 0)
        worst_steps = max(worst_steps, float(steps.max()))  # a zero scale must hold a zero channel
        top = np.abs(original).max(axis=tuple(d for d in range(data.ndim) if d != axis))
        worst_scale = max(worst_scale, float(np.abs(scale - top / 127).max() / (top / 127).max()))
    return {
        "matched": matched,
        "worst_error_in_steps": round(worst_steps, 3),
        "worst_scale_offset": round(worst_scale, 5),
    }


def int8_weights_in_pytorch(model: torch.nn.Module) -> tuple[torch.nn.Module, int]:
    """A copy of `model` whose conv and linear weights over the threshold are rounded as the file's are."""
    copied, count = copy.deepcopy(model).eval(), 0
    for module in copied.modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear) and module.weight.numel() > THRESHOLD:
            w = module.weight.data
            scale = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True).clamp_min(1e-12) / 127
            module.weight.data = (w / scale).round().clamp(-127, 127) * scale
            count += 1
    return copied, count


@torch.no_grad()
def correct(model: torch.nn.Module, batches: list) -> list[bool]:
    return [bool(x) for b in batches for x in (model(b.images).argmax(1) == b.labels)]


if __name__ == "__main__":
    main()
