"""A sparse MobileNetV2 as a .tflite: same top-1 as PyTorch, sparse tensors, a smaller download.

The shared ImageNet MobileNetV2 is sparsified one-shot by `obs` (its defaults: ERK shares, error correction;
64 odd-class calibration photos) to 0.7 of its sparsifiable weights. Three fp32 files from litert-torch's
converter, nothing else added: the dense model's; the sparse model's with its zeros stored dense (the
converter's own output); and that file with TFLite sparse tensors + DENSIFY (export/tflite_sparse.py, what
`convert` does). Checked on the 500 held-out even-class photos: the LiteRT interpreter's top-1 against
PyTorch's for the same model; the tensors that report `sparsity_parameters`; raw and zip (deflate) sizes,
and the raw saving against what the nonzeros and their indices predict. The app-ready file `convert` writes
is converted and checked too (numbers and MediaPipe's ImageClassifier). Timed interleaved with XNNPACK on
this x86 machine, where XNNPACK has no sparse kernels (they are ARM/WebAssembly code): expect the same
speed, not a gain.

Writes benchmarks/results/sparse_tflite.json: `python benchmarks/sparse_tflite.py [--split DIR]`."""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from mobileprune import api, load_model
from mobileprune.atomic import write_json
from mobileprune.bench import BenchConfig
from mobileprune.export import tflite_file, tflite_sparse
from mobileprune.reporting.provenance import machine_facts, versions
from mobileprune.sparsify.config import SparsifyConfig
from mobileprune.sparsify.run import sparsify
from mobileprune.sparsify.xnnpack import xnnpack_sparse

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from protocol import WEIGHTS, build_split  # noqa: E402

SPARSITY = 0.7
ZEROS, SPARSE = "sparse, zeros stored dense", "sparse, TFLite sparse tensors"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", type=Path, help="an existing imagenet_split.py output (default: build one)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.mkdtemp(prefix="mobileprune-sparse-tflite-")))
    args = ap.parse_args()
    split = build_split(args.split)
    dense = load_model(WEIGHTS, arch="mobilenet_v2")
    data, heldout = api.open_shrink_data(dense.spec, split / "unlabeled", split / "heldout", distill=True)
    result = sparsify(
        load_model(WEIGHTS, arch="mobilenet_v2"), SparsifyConfig(SPARSITY, method="obs", calibration_images=64), data
    )
    folder = api.save_output(result, args.work / "sparse", force=True)
    sparse = api.load_model(str(folder))

    files = {"dense model": args.work / "dense.tflite", ZEROS: args.work / "zeros.tflite"}
    _convert(dense.model, files["dense model"])
    _convert(sparse.model, files[ZEROS])
    files[SPARSE] = args.work / "sparse.tflite"
    model = tflite_file.read_model(files[ZEROS])
    stored = tflite_sparse.store_sparse(model)
    tflite_file.write_model(files[SPARSE], model)

    images = [item for item in (heldout[i] for i in range(len(heldout))) if item is not None]
    labels = np.array([label for _, label in images])
    pixels = torch.stack([x for x, _ in images])
    with torch.no_grad():
        torch_top1 = sparse.model(pixels).argmax(1).numpy()
    litert_top1, reporting = _interpreter_top1(files[SPARSE], pixels.numpy())
    sizes = {name: _sizes(path) for name, path in files.items()}
    [app_ready] = api.convert(sparse, ["tflite"], args.work / "bundle", force=True)
    labelled = [
        (api.open_bench_model(str(files[k]), k))
        for k in ("sparse, zeros stored dense", "sparse, TFLite sparse tensors")
    ]
    speed = api.bench(labelled, BenchConfig(runtimes=["litert"], threads=[1], runs=200))
    out = {
        "what": __doc__.splitlines()[0],
        "model": f"shared ImageNet MobileNetV2, obs one-shot, sparsity {result.report.sparsity['achieved']}",
        "heldout_images": int(len(labels)),
        "top1_pytorch": round(float((torch_top1 == labels).mean()), 4),
        "top1_litert": round(float((litert_top1 == labels).mean()), 4),
        "litert_top1_equals_pytorch_on": int((litert_top1 == torch_top1).sum()),
        "tensors_stored_sparse": len(stored),
        "tensors_reporting_sparsity_parameters": reporting,
        "sizes_bytes": sizes,
        "expected_raw_saving_bytes": sum(t.dense_bytes - t.sparse_bytes for t in stored),
        "measured_raw_saving_bytes": sizes[ZEROS]["raw"] - sizes[SPARSE]["raw"],
        "app_ready_file": {"check": app_ready.check, "ok": app_ready.ok, "notes": app_ready.notes},
        "xnnpack": xnnpack_sparse(sparse.model),
        "latency_x86_litert_1_thread": speed.to_json(),
        "versions": versions(),
        "machine": machine_facts(),
    }  # fmt: skip
    write_json(HERE / "results" / "sparse_tflite.json", out)
    print({k: v for k, v in out.items() if k not in ("latency_x86_litert_1_thread", "versions", "machine")})


def _convert(model: torch.nn.Module, path: Path) -> None:
    import litert_torch

    litert_torch.convert(model.eval(), (torch.randn(1, 3, 224, 224),)).export(str(path))


def _interpreter_top1(path: Path, pixels: np.ndarray) -> tuple[np.ndarray, int]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    reporting = sum(1 for t in interpreter.get_tensor_details() if t.get("sparsity_parameters"))
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    top1 = []
    for image in pixels:
        interpreter.set_tensor(inp["index"], image[None].astype(np.float32))
        interpreter.invoke()
        top1.append(int(interpreter.get_tensor(out["index"])[0].argmax()))
    return np.array(top1), reporting


def _sizes(path: Path) -> dict:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(path, path.name)
    return {"raw": path.stat().st_size, "zip": len(buffer.getvalue())}


if __name__ == "__main__":
    main()
