"""`convert`: tiny pruned MobileNets to every format, each checked against PyTorch."""

import io
import json

import numpy as np
import pytest
from rich.console import Console

from mobileprune import ShrinkConfig, load_model, save_output, shrink
from mobileprune.export import FORMATS, ModelAbout, convert
from mobileprune.export.convert import CheckInputs, judge
from mobileprune.progress import Progress

VARIANTS = {
    "mobilenet_v1": {},
    "mobilenet_v2": {"width_mult": 0.25},
    "mobilenet_v3_small": {"width_mult": 0.25},
}


def _tiny_pruned(arch: str, tmp_path):
    loaded = load_model(arch, arch_kwargs={"num_classes": 10, **VARIANTS[arch]})
    loaded.spec = type(loaded.spec)(**{**loaded.spec.to_json(), "input_size": 32})
    save_output(shrink(loaded, ShrinkConfig(target=0.8, allocation="uniform")), tmp_path / "shrunk")
    return load_model(tmp_path / "shrunk")


@pytest.mark.parametrize(
    "arch",
    # V2 runs in `make test`; V1 and V3-small convert the same ops and run with `make test-all`
    ["mobilenet_v2", *(pytest.param(a, marks=pytest.mark.slow) for a in VARIANTS if a != "mobilenet_v2")],
)
def test_pruned_mobilenet_converts_to_every_format(arch, tmp_path):
    loaded = _tiny_pruned(arch, tmp_path)
    labels = [f"class {i}" for i in range(10)]
    about = ModelAbout("", "", version="2", author="Ada", license="MIT")
    results = {r.format: r for r in convert(loaded, FORMATS.names(), tmp_path / "bundle", labels=labels, about=about)}
    for name in ("onnx", "tflite", "executorch"):
        assert results[name].ok and results[name].max_abs_diff <= 1e-4, results[name]
    coreml = results["coreml"]
    assert coreml.ok and coreml.precision == "fp16"
    assert coreml.details["inputs"] == ["image"] and coreml.details["classifier"] == "classLabel"
    assert coreml.details["ops"] > 10
    assert (coreml.details["author"], coreml.details["license"], coreml.details["version"]) == ("Ada", "MIT", "2")
    bundle = tmp_path / "bundle"
    assert {p.name for p in bundle.iterdir()} == {
        "model.onnx",
        "model.tflite",
        "model.pte",
        "model.mlpackage",
        "labels.txt",
        "metadata.json",
    }
    meta = json.loads((bundle / "metadata.json").read_text())
    assert meta["input"]["size"] == [32, 32] and meta["classes"] == 10
    assert meta["params"] < 3_300_000 and {f["format"] for f in meta["formats"]} == set(results)
    assert "litert-torch" in meta["versions"] and "coremltools" in meta["versions"]


def test_missing_converter_names_the_extra_and_others_still_build(run_cli, tmp_path, monkeypatch):
    monkeypatch.setattr(FORMATS.create("coreml").__class__, "missing", lambda self: "coremltools")
    res = run_cli(
        "convert",
        "mobilenet_v2",
        "--num-classes",
        "10",
        "--input-size",
        "32",
        "--to",
        "onnx,coreml",
        "--out",
        tmp_path / "b",
    )
    assert res.code == 1
    assert "pip install mobileprune[coreml]" in res.out
    assert (tmp_path / "b" / "model.onnx").exists() and not (tmp_path / "b" / "model.mlpackage").exists()


def test_unknown_format_is_refused_before_any_work(run_cli, tmp_path):
    res = run_cli("convert", "mobilenet_v2", "--to", "onnx,tensorrt", "--out", tmp_path / "b")
    assert res.code == 2 and "unknown format 'tensorrt'" in res.err
    assert not (tmp_path / "b").exists()


def test_shrink_with_export_writes_a_bundle_in_one_go(run_cli, tmp_path):
    out = tmp_path / "shrunk"
    res = run_cli(
        "shrink",
        "mobilenet_v2",
        "--num-classes",
        "10",
        "--input-size",
        "32",
        "--allocation",
        "uniform",
        "--export",
        "onnx",
        "--out",
        out,
        "--quiet",
    )
    assert res.code == 0, res.err
    meta = json.loads((out / "bundle" / "metadata.json").read_text())
    assert meta["formats"][0]["ok"] and meta["formats"][0]["max_abs_diff"] <= 1e-4
    assert (out / "model.safetensors").exists() and (out / "bundle" / "model.onnx").exists()


def test_fp16_tflite_is_half_the_size_and_within_tolerance(tmp_path):
    loaded = _tiny_pruned("mobilenet_v2", tmp_path)
    results = {
        (r.format, r.precision): r
        for r in convert(loaded, ["tflite", "onnx"], tmp_path / "b", precisions=["fp32", "fp16"])
    }
    fp32, fp16 = results[("tflite", "fp32")], results[("tflite", "fp16")]
    assert fp16.file == "model.fp16.tflite" and fp16.ok and fp16.max_abs_diff <= 1e-2
    assert fp16.size_mb < 0.7 * fp32.size_mb  # weights halve; a tiny model keeps its fixed graph overhead
    assert ("onnx", "fp16") not in results and results[("onnx", "fp32")].ok  # onnx writes no fp16


def test_int8_tflite_is_full_integer_with_data_and_dynamic_range_without(tmp_path, image_folder):
    from ai_edge_litert.interpreter import Interpreter

    loaded = _tiny_pruned("mobilenet_v2", tmp_path)
    calibrated = convert(loaded, ["tflite"], tmp_path / "a", precisions=["int8"], data=image_folder)[0]
    assert calibrated.file == "model.int8.tflite" and "full-integer" in calibrated.notes[0]
    assert "images" in calibrated.check and "random" not in calibrated.check  # checked on the real val images
    interpreter = Interpreter(model_path=str(tmp_path / "a" / calibrated.file))
    # the app-ready file: int8 inside, float 0-1 pixels in and float scores out, as MediaPipe reads them
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    assert interpreter.get_output_details()[0]["dtype"] == np.float32
    assert "tensors: FLOAT32 input, FLOAT32 output" in calibrated.notes
    meta = json.loads((tmp_path / "a" / "metadata.json").read_text())
    assert meta["check"]["inputs"].startswith("16 real images") and "(val)" in meta["check"]["inputs"]

    tensor_input = convert(
        loaded, ["tflite"], tmp_path / "t", precisions=["int8"], data=image_folder, layout="nchw", normalize=False
    )[0]
    interpreter = Interpreter(model_path=str(tmp_path / "t" / tensor_input.file))
    assert interpreter.get_input_details()[0]["dtype"] == np.int8  # what NPUs and int8 kernels want
    assert "tensors: INT8 input, INT8 output" in tensor_input.notes

    dynamic = convert(loaded, ["tflite"], tmp_path / "b", precisions=["int8"])[0]
    assert "dynamic-range" in dynamic.notes[0] and dynamic.check.startswith("not checked: needs real images")
    interpreter = Interpreter(model_path=str(tmp_path / "b" / dynamic.file))
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    fp32_size = convert(loaded, ["tflite"], tmp_path / "c", check=False)[0].size_mb
    assert dynamic.size_mb < 0.5 * fp32_size and calibrated.size_mb < 0.5 * fp32_size


@pytest.mark.parametrize("fmt", ["onnx", "executorch"])
def test_int8_onnx_and_executorch_need_calibration_images(fmt, tmp_path, image_folder):
    loaded = _tiny_pruned("mobilenet_v2", tmp_path)
    fp32, int8 = convert(loaded, [fmt], tmp_path / "a", precisions=["fp32", "int8"], data=image_folder)
    suffix = {"onnx": "onnx", "executorch": "pte"}[fmt]
    assert int8.file == f"model.int8.{suffix}" and int8.ok and "calibrated on 48 images" in int8.notes[0]
    assert "estimated top-1 change" in int8.check and "random" not in int8.check  # the int8 rule, real images
    assert int8.size_mb < 0.5 * fp32.size_mb
    if fmt == "onnx":  # what ONNX Runtime's int8 kernels take: quantize/dequantize pairs around the convs
        import onnx

        ops = {node.op_type for node in onnx.load(str(tmp_path / "a" / int8.file)).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops

    log = io.StringIO()
    results = convert(loaded, [fmt], tmp_path / "b", precisions=["int8"], progress=Progress(Console(file=log)))
    assert [(r.file, r.precision) for r in results] == [(f"model.{suffix}", "fp32")]  # no int8 without images
    assert f"{fmt}: no int8 file without calibration images (--data)" in log.getvalue()


def test_int8_check_charges_flips_by_what_pytorch_thought_of_them():
    real = CheckInputs(np.zeros((20, 3, 8, 8), np.float32), True, "20 real images")
    sure = np.eye(4, dtype=np.float32)[[0, 1, 2, 3] * 5] * 10  # PyTorch all but certain of every answer
    verdict, ok = judge("int8", sure + 0.3, sure, real)
    change = "estimated top-1 change +0.0 points (PyTorch's probabilities)"
    assert ok and verdict == f"passed ({change}, top-1 agreement 1.000 on 20 images)"
    flipped = sure.copy()
    flipped[:2] = flipped[:2, ::-1]  # 2 of 20 confident answers changed: about 10 points lost
    verdict, ok = judge("int8", flipped, sure, real)
    assert not ok and "estimated top-1 change -10.0 points" in verdict and "0.900" in verdict, verdict
    tied = sure.copy()
    tied[:, 3] = np.where(tied[:, 3] == 10, 10, 9.99)  # every answer but class 3 has class 3 as a near-tie
    near = tied.copy()
    near[:2, 3] += 0.02  # the same 2 of 20 flipped, now between near-equal classes: almost free
    verdict, ok = judge("int8", near, tied, real)
    assert ok and "0.900" in verdict and "estimated top-1 change +0.0 points" in verdict, verdict
    probabilities = np.full((20, 4), 0.25, np.float32)
    probabilities[:, 0] = 0.97
    probabilities[:, 1:] = 0.01
    verdict, ok = judge("int8", probabilities[:, ::-1].copy(), probabilities, real)  # outputs already softmaxed
    assert not ok and "estimated top-1 change -96.0 points" in verdict, verdict
    noise = CheckInputs(real.images, False, "random")
    assert judge("int8", flipped, sure, noise)[1]  # random inputs cannot judge int8 accuracy: not a fail
    reference = sure / 10
    assert judge("fp32", reference + 2e-4, reference, real) == ("FAILED (max |diff| 2.0e-04 > 0.0001)", False)


def test_tflite_is_nhwc_pixels_by_default_and_nchw_stays_available(tmp_path, image_folder):
    from ai_edge_litert.interpreter import Interpreter

    from mobileprune.export.tflite_format import read_metadata

    loaded = _tiny_pruned("mobilenet_v3_small", tmp_path)
    labels = [f"class {i}" for i in range(10)]
    results = convert(loaded, ["tflite", "onnx"], tmp_path / "b", labels=labels, data=image_folder)
    assert all(r.ok and r.max_abs_diff <= 1e-4 for r in results), results
    assert [r.layout for r in results] == ["NHWC", "NCHW"]  # each format's own default
    interpreter = Interpreter(model_path=str(tmp_path / "b" / "model.tflite"))
    assert list(interpreter.get_input_details()[0]["shape"]) == [1, 32, 32, 3]
    embedded = read_metadata(tmp_path / "b" / "model.tflite")
    assert embedded["input"]["layout"] == "NHWC" and embedded["input"]["size"] == [32, 32]
    assert embedded["input"]["normalized_in_model"]["mean"] == list(loaded.spec.mean)
    assert embedded["input"]["mean"] == [0.0] * 3 and embedded["labels"] == labels
    assert results[1].input["mean"] == list(loaded.spec.mean)  # onnx: normalised tensors, as PyTorch took

    nchw = convert(loaded, ["tflite"], tmp_path / "c", labels=labels, layout="nchw", normalize=False)[0]
    assert nchw.ok and nchw.layout == "NCHW" and nchw.max_abs_diff <= 1e-4
    interpreter = Interpreter(model_path=str(tmp_path / "c" / "model.tflite"))
    assert list(interpreter.get_input_details()[0]["shape"]) == [1, 3, 32, 32]
    assert read_metadata(tmp_path / "c" / "model.tflite")["input"]["mean"] == list(loaded.spec.mean)


def test_convert_cli_refuses_unknown_layout_and_precision(run_cli, tmp_path):
    res = run_cli("convert", "mobilenet_v2", "--layout", "nchw4", "--out", tmp_path / "b")
    assert res.code == 2 and "unknown layout 'nchw4'" in res.err
    res = run_cli("convert", "mobilenet_v2", "--precision", "int4", "--out", tmp_path / "b")
    assert res.code == 2 and "unknown precision 'int4': choose from fp32, fp16, int8" in res.err
    res = run_cli("convert", "mobilenet_v2", "--normalize", "twice", "--out", tmp_path / "b")
    assert res.code == 2 and "unknown --normalize 'twice': choose from in-model, in-app" in res.err
    assert not (tmp_path / "b").exists()


def test_coreml_normalises_inside_the_model_exactly_per_channel():
    import torch

    from mobileprune.export.app_input import NormalizedInput, normalize, to_pixels
    from mobileprune.export.coreml_format import CoreMLExporter

    spec = load_model("mobilenet_v2", arch_kwargs={"width_mult": 0.25}).spec
    pixels = np.random.default_rng(0).integers(0, 256, size=(2, 3, 8, 8)).astype(np.uint8)
    assert (to_pixels(normalize(pixels / 255.0, spec.mean, spec.std), spec.mean, spec.std) == pixels).all()
    probe = torch.nn.Identity()
    wrapped = NormalizedInput(probe, spec.mean, spec.std)
    expected = normalize(pixels / 255.0, spec.mean, spec.std)
    assert np.allclose(wrapped(torch.from_numpy(pixels / 255.0).float()).numpy(), expected, atol=1e-6)
    noise = np.random.default_rng(1).normal(0, 3, size=(2, 3, 8, 8)).astype(np.float32)
    carried = CoreMLExporter().representable(noise, spec)  # what an 8-bit image input can carry
    assert carried.dtype == np.float32 and not np.allclose(carried, noise)
    assert (to_pixels(carried, spec.mean, spec.std) == to_pixels(noise, spec.mean, spec.std)).all()


def test_coreml_target_flag_is_checked_before_any_work_and_used(run_cli, tmp_path):
    res = run_cli("convert", "mobilenet_v2", "--to", "coreml", "--coreml-target", "iOS3", "--out", tmp_path / "b")
    assert res.code == 2 and "unknown Core ML target 'iOS3'" in res.err and "iOS17" in res.err
    assert not (tmp_path / "b").exists()
    loaded = _tiny_pruned("mobilenet_v3_small", tmp_path)
    result = convert(loaded, ["coreml"], tmp_path / "c", coreml_target="iOS17", check=False)[0]
    import coremltools as ct

    spec = ct.utils.load_spec(str(tmp_path / "c" / result.file))
    assert result.ok and spec.specificationVersion == 8  # iOS17's spec version (iOS16 writes 7)


def test_coreml_int8_stores_weights_as_int8_without_images(tmp_path):
    loaded = _tiny_pruned("mobilenet_v2", tmp_path)
    fp16, int8 = convert(loaded, ["coreml"], tmp_path / "a", precisions=["fp16", "int8"])
    assert (fp16.file, int8.file) == ("model.mlpackage", "model.int8.mlpackage") and int8.ok
    assert int8.notes == ["int8 weights (per output channel, symmetric), fp16 activations"]
    assert fp16.details["compressed_weights"] == 0 and int8.details["compressed_weights"] >= 10
    assert int8.details["classifier"] == "classLabel" and int8.size_mb < 0.7 * fp16.size_mb
    import coremltools as ct

    from mobileprune.export.coreml_format import program_ops

    spec = ct.utils.load_spec(str(tmp_path / "a" / int8.file))
    quantized = [op for op in program_ops(spec) if op.type == "constexpr_affine_dequantize"]
    data = quantized[0].attributes["quantized_data"].type.tensorType
    scales = quantized[0].attributes["scale"].type.tensorType
    assert data.dataType == ct.proto.MIL_pb2.DataType.INT8 and scales.dimensions[0].constant.size > 1  # per channel


def test_float_check_tolerance_scales_with_large_outputs():
    """Random-weight networks can reach logits of 1e11, where float32 itself differs by 1e4."""
    reference = np.eye(4, dtype=np.float32)[[0, 1, 2, 3] * 5] * 1e6
    real = CheckInputs(np.zeros((20, 3, 8, 8), np.float32), True, "20 real images")
    verdict, ok = judge("fp32", reference + 50, reference, real)
    assert ok and "<= 1.0e+02 = 0.0001 x output scale 1e+06" in verdict
    verdict, ok = judge("fp32", reference + 500, reference, real)
    assert not ok and "> 1.0e+02" in verdict
