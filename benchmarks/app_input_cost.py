"""What the app-ready .tflite input costs: NCHW vs NHWC vs NHWC with the normalisation inside, and int8.

The shared ImageNet MobileNetV2 converted four ways by `convert` (LiteRT, fp32 unless said): PyTorch's
normalised NCHW tensor (`--layout nchw --normalize in-app`), normalised NHWC (`--layout nhwc --normalize
in-app`), the app-ready default (NHWC 0–1 RGB, per-channel normalisation in the graph), and the app-ready
int8 file (calibrated on 100 odd-class photos of the accuracy protocol). All timed interleaved in one `bench`
run (batch 1, 1 thread), with the NCHW file a second time as the noise (model vs itself).

Writes benchmarks/results/app_input_cost.json. Run: `make bench-app-input` (a few minutes; an idle machine).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from protocol import SHARED, WEIGHTS

from mobileprune import load_model
from mobileprune.bench import BenchConfig, bench, open_bench_model
from mobileprune.export import convert
from mobileprune.reporting.provenance import machine_facts, versions

HERE = Path(__file__).resolve().parent
VARIANTS = {
    "NCHW, normalised input": {"layout": "nchw", "normalize": False},
    "NHWC, normalised input": {"layout": "nhwc", "normalize": False},
    "app-ready (NHWC, 0-1 RGB, normalised in the model)": {},
}


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="mobileprune-app-input-"))
    split = work / "split"
    subprocess.run([sys.executable, str(SHARED / "protocols" / "imagenet_split.py"), str(split)], check=True)
    loaded = load_model(WEIGHTS, arch="mobilenet_v2")
    files = {}
    for i, (label, options) in enumerate(VARIANTS.items()):
        convert(loaded, ["tflite"], work / f"v{i}", check=False, **options)
        files[label] = work / f"v{i}" / "model.tflite"
    convert(loaded, ["tflite"], work / "int8", precisions=["int8"], data=split / "unlabeled", check=False)
    files["app-ready int8"] = work / "int8" / "model.int8.tflite"
    first = next(iter(files.values()))
    models = [open_bench_model(path, label) for label, path in files.items()]
    models.append(open_bench_model(first, "NCHW, normalised input (again: noise)"))
    result = bench(models, BenchConfig(runtimes=["litert"], threads=[1], runs=200, min_seconds=4.0))
    medians = {m.model: round(m.stats.median_ms, 3) for m in result.measurements}
    base = medians["NHWC, normalised input"]
    out = {
        "protocol": __doc__.split("\n\n")[1],
        "median_ms": medians,
        "relative_to_nhwc_normalised": {k: round(v / base, 4) for k, v in medians.items()},
        "noise_nchw_vs_itself": round(
            medians["NCHW, normalised input (again: noise)"] / medians["NCHW, normalised input"], 4
        ),
        "bench": result.to_json(),
        "versions": versions(),
        "machine": machine_facts(),
    }
    path = HERE / "results" / "app_input_cost.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("median_ms", "relative_to_nhwc_normalised", "noise_nchw_vs_itself")}))


if __name__ == "__main__":
    main()
