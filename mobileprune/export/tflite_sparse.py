"""Sparse weights in a `.tflite`: TFLite's sparse tensor format, densified once at load by a DENSIFY op.

litert-torch writes every weight dense, and TensorFlow's converter (whose EXPERIMENTAL_SPARSITY
optimisation does this) needs TensorFlow. So the rewrite is done on the flatbuffer (schema object API,
see tflite_file.py): a conv or fully-connected weight whose zeros make the sparse form smaller is replaced
by a sparse constant — `SparsityParameters` with every dimension DENSE but the last, which is SPARSE_CSR
(row segments and column indices, in the narrowest integer vector that holds them) — plus a DENSIFY op that
rebuilds the dense tensor the op reads. The interpreter densifies constant inputs once while preparing, so
inference runs on the same numbers; XNNPACK's delegate reads the DENSIFY output as static weights and,
on ARM, decides by its own rules whether to run the 1×1 convs sparse (sparsify/xnnpack.py). The download
shrinks by roughly zeros × weight bytes, minus the index bytes (1–2 per kept weight).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .tflite_file import buffer_users, entry_name, new_buffer, operator_code

# float32 only: int8 weights stored this way make ai-edge-litert's XNNPACK delegate fail to prepare
# ("failed to delegate CONV_2D node"), so int8 files keep their zeros dense (a zip still squeezes them)
ELEMENT_BYTES = {"FLOAT32": 4}


@dataclass(frozen=True)
class SparseTensor:
    name: str
    shape: list[int]
    sparsity: float
    dense_bytes: int
    sparse_bytes: int

    def to_json(self) -> dict:
        return {
            "tensor": self.name,
            "shape": self.shape,
            "sparsity": round(self.sparsity, 4),
            "dense_bytes": self.dense_bytes,
            "sparse_bytes": self.sparse_bytes,
        }


def store_sparse(model) -> list[SparseTensor]:
    """Rewrite every conv / fully-connected weight that is smaller sparse; the changed tensors, in order."""
    from ai_edge_litert import schema_py_generated as schema

    graph = model.subgraphs[0]
    kinds = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    users = buffer_users(model)
    targets = (schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.FULLY_CONNECTED)
    densify_ops, changed = [], []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) not in targets or len(op.inputs) < 2:
            continue
        index = op.inputs[1]
        tensor = graph.tensors[index]
        kind = kinds.get(tensor.type)
        data = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
        if kind not in ELEMENT_BYTES or data is None or len(data) == 0 or tensor.sparsity is not None:
            continue
        weight = np.frombuffer(bytes(data), dtype=np.float32).reshape(list(tensor.shape))
        encoded = _encode(weight, ELEMENT_BYTES[kind])
        if encoded is None:
            continue
        values, sparsity_parameters, size = encoded
        sparse = schema.TensorT()
        sparse.shape, sparse.type, sparse.quantization = tensor.shape, tensor.type, tensor.quantization
        sparse.name = entry_name(tensor) + "_sparse"
        sparse.sparsity = sparsity_parameters
        sparse.buffer = new_buffer(model, values.tobytes())
        graph.tensors.append(sparse)
        if users[tensor.buffer] == 1:
            model.buffers[tensor.buffer].data = None  # its only reader now reads the DENSIFY output
        tensor.buffer = new_buffer(model, b"")
        densify = schema.OperatorT()
        densify.opcodeIndex = operator_code(model, schema.BuiltinOperator.DENSIFY)
        densify.inputs, densify.outputs = [len(graph.tensors) - 1], [index]
        densify_ops.append(densify)
        zeros = 1 - np.count_nonzero(weight) / weight.size
        changed.append(SparseTensor(entry_name(tensor), list(map(int, tensor.shape)), zeros, int(weight.nbytes), size))
    graph.operators = densify_ops + list(graph.operators)  # constants only: densified before anything runs
    return changed


def has_sparse_tensors(path: Path) -> bool:
    """Whether a .tflite file holds any tensor with sparsity parameters (read without unpacking the file)."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.Model.GetRootAs(path.read_bytes(), 0)
        graph = model.Subgraphs(0)
        return any(graph.Tensors(i).Sparsity() is not None for i in range(graph.TensorsLength()))
    except Exception:  # not a flatbuffer this schema reads: nothing to say about it
        return False


def _encode(weight: np.ndarray, element_bytes: int):
    """(values, SparsityParametersT, bytes) of `weight` as DENSE… × SPARSE_CSR, or None when not smaller."""
    from ai_edge_litert import schema_py_generated as schema

    rows = weight.reshape(-1, weight.shape[-1])
    nonzero = rows != 0
    count = int(nonzero.sum())
    segments = np.concatenate([[0], np.cumsum(nonzero.sum(1))]).astype(np.int64)
    indices = np.nonzero(nonzero)[1]
    segment_vector, segment_bytes = _index_vector(segments, count)
    index_vector, index_bytes = _index_vector(indices, weight.shape[-1] - 1)
    size = count * element_bytes + len(segments) * segment_bytes + count * index_bytes
    if size >= weight.nbytes:
        return None
    dims = []
    for extent in weight.shape[:-1]:
        dense = schema.DimensionMetadataT()
        dense.format, dense.denseSize = schema.DimensionType.DENSE, int(extent)
        dims.append(dense)
    csr = schema.DimensionMetadataT()
    csr.format = schema.DimensionType.SPARSE_CSR
    csr.arraySegmentsType, csr.arraySegments = segment_vector
    csr.arrayIndicesType, csr.arrayIndices = index_vector
    dims.append(csr)
    parameters = schema.SparsityParametersT()
    parameters.traversalOrder = list(range(weight.ndim))
    parameters.dimMetadata = dims
    return rows[nonzero], parameters, size


def _index_vector(values: np.ndarray, largest: int):
    """The narrowest of the schema's index vectors that holds `largest`, filled with `values`."""
    from ai_edge_litert import schema_py_generated as schema

    for limit, kind, cls, nbytes in (
        (255, schema.SparseIndexVector.Uint8Vector, schema.Uint8VectorT, 1),
        (65535, schema.SparseIndexVector.Uint16Vector, schema.Uint16VectorT, 2),
        (2**31 - 1, schema.SparseIndexVector.Int32Vector, schema.Int32VectorT, 4),
    ):
        if largest <= limit:
            vector = cls()
            vector.values = [int(v) for v in values]
            return (kind, vector), nbytes
    raise ValueError("tensor too large for TFLite's sparse index vectors")
