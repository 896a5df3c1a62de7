"""Edits of a converted `.tflite` file's flatbuffer: named metadata entries, a float output, packed files.

litert-torch writes the model; what an app's client needs beyond it (metadata that MediaPipe reads, an
output type it accepts, the labels file) is added here through the TFLite schema's object API
(`ai_edge_litert.schema_py_generated`), so no converter internals are touched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_model(path: Path):
    """The file's `ModelT` (the flatbuffer as Python objects); weights stored by offset are pulled inside.

    Large models keep weights after the flatbuffer, addressed by offset; those offsets would shift once the
    edited table grows, so the bytes move into their buffers (the files here are far below 2 GB).
    """
    from ai_edge_litert import schema_py_generated as schema

    raw = path.read_bytes()
    model = schema.ModelT.InitFromPackedBuf(raw, 0)
    for buf in model.buffers:
        if buf.offset > 1:
            buf.data = np.frombuffer(raw, dtype=np.uint8, count=buf.size, offset=buf.offset)
            buf.offset, buf.size = 0, 0
    return model


def write_model(path: Path, model, appended: bytes = b"") -> None:
    """Pack `model` into `path`, followed by `appended` (a zip of associated files, which runtimes ignore)."""
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()) + appended)


def set_metadata(model, name: str, data: bytes) -> None:
    """Add (or replace) the named entry of `Model.metadata`, stored in a buffer of its own."""
    from ai_edge_litert import schema_py_generated as schema

    buffer = schema.BufferT()
    buffer.data = np.frombuffer(data, dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if entry_name(m) != name] + [entry]


def metadata_entry(path: str | Path, name: str) -> bytes | None:
    """The bytes of a named metadata entry of a .tflite file, or None when it has none."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(Path(path).read_bytes(), 0)
    for entry in model.metadata or []:
        if entry_name(entry) == name:
            return bytes(model.buffers[entry.buffer].data)
    return None


def float_output(model) -> bool:
    """Give an integer output tensor a DEQUANTIZE to float32 after it; True when the graph changed.

    Full-integer files end in an int8 tensor; MediaPipe's classifier (and most app code) reads float32
    or uint8 scores only, and one dequantize of a few thousand logits costs nothing next to the network.
    """
    from ai_edge_litert import schema_py_generated as schema

    graph = model.subgraphs[0]
    index = graph.outputs[0]
    quantized = graph.tensors[index]
    if quantized.type not in (schema.TensorType.INT8, schema.TensorType.UINT8):
        return False
    code = operator_code(model, schema.BuiltinOperator.DEQUANTIZE)
    result = schema.TensorT()
    result.shape, result.type, result.buffer = quantized.shape, schema.TensorType.FLOAT32, _empty_buffer(model)
    result.name = (quantized.name.decode() if isinstance(quantized.name, bytes) else quantized.name) + "_float"
    graph.tensors.append(result)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = code, [index], [len(graph.tensors) - 1]
    graph.operators.append(op)
    graph.outputs = [len(graph.tensors) - 1, *graph.outputs[1:]]
    for signature in model.signatureDefs or []:
        for output in signature.outputs:
            if output.tensorIndex == index:
                output.tensorIndex = len(graph.tensors) - 1
    return True


def tensor_types(model) -> tuple[str, str]:
    """Names of the first input's and first output's element types ('FLOAT32', 'INT8', ...)."""
    from ai_edge_litert import schema_py_generated as schema

    graph = model.subgraphs[0]
    names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    return names[graph.tensors[graph.inputs[0]].type], names[graph.tensors[graph.outputs[0]].type]


def buffer_users(model) -> dict[int, int]:
    """How many tensors read each buffer (the converter may share one buffer between equal constants)."""
    users: dict[int, int] = {}
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            users[tensor.buffer] = users.get(tensor.buffer, 0) + 1
    return users


def entry_name(entry) -> str:
    """The name of a metadata entry or tensor (bytes or str, depending on how the file was read)."""
    return entry.name.decode() if isinstance(entry.name, bytes) else str(entry.name)


def new_buffer(model, data: bytes) -> int:
    """Index of a new buffer holding `data` (none if empty), appended to the model's buffers."""
    from ai_edge_litert import schema_py_generated as schema

    buffer = schema.BufferT()
    buffer.data = np.frombuffer(data, dtype=np.uint8) if data else None
    model.buffers.append(buffer)
    return len(model.buffers) - 1


def operator_code(model, builtin: int) -> int:
    from ai_edge_litert import schema_py_generated as schema

    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _empty_buffer(model) -> int:
    """Index of a buffer without data (buffer 0 by the schema's convention), made if the file lacks one."""
    from ai_edge_litert import schema_py_generated as schema

    if model.buffers and (model.buffers[0].data is None or len(model.buffers[0].data) == 0):
        return 0
    model.buffers.append(schema.BufferT())
    return len(model.buffers) - 1
