"""int8 `.tflite` biases stored in the units the kernels read them in: input scale × weight scale.

A TFLite int8 convolution or fully connected layer adds its int32 bias straight to the int32 sum of
products, so the kernels take the bias's scale to be the input's scale times the weight's (per output
channel); the scale stored with the bias is never read. litert-torch can store a bias quantized with
another input scale: the fully connected layer after global average pooling gets the scale of the map
*before* the pooling, while the pooled tensor it actually reads has its own (README, "The int8
check"). The kernel then adds a bias several times too large or too small. That goes unseen while
biases are small (a pretrained classifier's) and flips most answers once reconstruction has given the
classifier real biases. Here every such bias is requantized to the scale the kernel uses; the rounding
that adds is half a unit of input × weight scale, what a correct converter would have rounded to.
"""

from __future__ import annotations

import numpy as np

from .tflite_file import buffer_users, entry_name, new_buffer

BIASED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")  # input, weight, bias are inputs 0, 1, 2
INT32_RANGE = (-(2**31), 2**31 - 1)


def requantize_biases(model) -> list[str]:
    """Rescale every int32 bias of `model` (a `ModelT`) whose stored scale is not input × weight scale;
    returns the names of the biases changed. A bias buffer shared with another tensor gets a copy."""
    from ai_edge_litert import schema_py_generated as schema

    wanted = {getattr(schema.BuiltinOperator, name) for name in BIASED}
    users = buffer_users(model)
    changed = []
    for graph in model.subgraphs:
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) not in wanted or len(op.inputs) < 3:
                continue
            if op.inputs[2] < 0:  # no bias
                continue
            x, w, b = (graph.tensors[i] for i in op.inputs[:3])
            if b.type != schema.TensorType.INT32 or not _quantized(x) or not _quantized(w) or not _quantized(b):
                continue
            stored = np.asarray(b.quantization.scale, dtype=np.float64)
            expected = np.broadcast_to(float(x.quantization.scale[0]) * np.asarray(w.quantization.scale), stored.shape)
            if np.allclose(stored, expected, rtol=1e-5, atol=0):
                continue
            buffer = model.buffers[b.buffer]
            values = np.frombuffer(bytes(buffer.data), dtype="<i4").astype(np.float64)
            fixed = np.clip(np.round(values * stored / expected), *INT32_RANGE).astype("<i4")
            if users.get(b.buffer, 0) > 1:  # another tensor reads the old values: give this one its own
                users[b.buffer] -= 1
                b.buffer = new_buffer(model, fixed.tobytes())
            else:
                buffer.data = np.frombuffer(fixed.tobytes(), dtype=np.uint8)
            b.quantization.scale = [float(s) for s in expected]
            b.quantization.zeroPoint = [0] * len(expected)
            changed.append(entry_name(b))
    return changed


def _quantized(tensor) -> bool:
    q = tensor.quantization
    return q is not None and q.scale is not None and len(q.scale) > 0
