"""int8 .tflite biases in the units the kernels read them in (tflite_bias.py)."""

import numpy as np
import pytest
import torch
from conftest import lively

from mobileprune import load_model
from mobileprune.export import convert
from mobileprune.export.tflite_bias import BIASED, requantize_biases
from mobileprune.export.tflite_file import read_model, write_model

pytest.importorskip("ai_edge_litert")


def _int8_file(tmp_path, image_folder, bias: float):
    """A tiny MobileNetV2 whose classifier has real biases (as after reconstruction), as an int8 .tflite."""
    loaded = load_model("mobilenet_v2", arch_kwargs={"width_mult": 0.25, "num_classes": 10}, input_size=32)
    lively(loaded.model, 32)
    with torch.no_grad():
        loaded.model.classifier[1].bias.copy_(torch.linspace(-bias, bias, 10))
    result = convert(loaded, ["tflite"], tmp_path / "b", data=image_folder, precisions=["int8"])[0]
    return loaded, result, tmp_path / "b" / result.file


def _outputs(path, images: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    source, sink = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    rows = []
    for image in images:
        interpreter.set_tensor(source["index"], image[None])
        interpreter.invoke()
        rows.append(interpreter.get_tensor(sink["index"])[0].copy())
    return np.stack(rows)


def _biases(model):
    """(op name, input scale, weight scales, bias tensor) of every biased conv and fully connected layer."""
    from ai_edge_litert import schema_py_generated as schema

    names = {getattr(schema.BuiltinOperator, n): n for n in BIASED}
    graph = model.subgraphs[0]
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode))
        if name and len(op.inputs) > 2 and op.inputs[2] >= 0:
            x, w, b = (graph.tensors[i] for i in op.inputs[:3])
            yield name, x.quantization.scale[0], np.asarray(w.quantization.scale), b


def test_every_int8_bias_is_stored_in_input_times_weight_scale(tmp_path, image_folder):
    _, result, path = _int8_file(tmp_path, image_folder, bias=3.0)
    seen = set()
    for name, x_scale, w_scales, bias in _biases(read_model(path)):
        seen.add(name)
        np.testing.assert_allclose(bias.quantization.scale, x_scale * w_scales, rtol=1e-5)
    assert seen == set(BIASED)
    # litert-torch stores the classifier's bias in the pre-pooling scale; the note says it was mended
    assert any("biases requantized" in note for note in result.notes), result.notes


def test_a_bias_in_the_wrong_scale_is_put_back_to_what_the_kernel_reads(tmp_path, image_folder):
    loaded, _, path = _int8_file(tmp_path, image_folder, bias=3.0)
    rng = np.random.default_rng(0)
    images = rng.random((16, 32, 32, 3), dtype=np.float32)  # the app-ready file: NHWC, 0-1
    good = _outputs(path, images)
    model = read_model(path)
    _, _, _, classifier = [b for b in _biases(model) if b[0] == "FULLY_CONNECTED"][-1]
    values = np.frombuffer(bytes(model.buffers[classifier.buffer].data), dtype="<i4")
    model.buffers[classifier.buffer].data = np.frombuffer((values // 4).astype("<i4").tobytes(), dtype=np.uint8)
    classifier.quantization.scale = [4 * s for s in classifier.quantization.scale]  # same bias, stored as the bug does
    broken = tmp_path / "broken.tflite"
    write_model(broken, model)
    assert np.abs(_outputs(broken, images) - good).max() > 1.0  # the kernel now adds a quarter of each bias
    assert len(requantize_biases(model)) == 1
    write_model(broken, model)
    mended = _outputs(broken, images)
    graph = model.subgraphs[0]
    logits = graph.tensors[graph.operators[-1].inputs[0]]  # the int8 logits the final DEQUANTIZE reads
    step = float(logits.quantization.scale[0])
    assert np.abs(mended - good).max() <= step * 1.01  # the same file, up to one rounding of the bias
    assert requantize_biases(model) == []  # nothing left to mend
