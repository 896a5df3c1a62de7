"""Would XNNPACK run this model's sparse weights sparse? Its rules (`xnn_subgraph_rewrite_for_nchw`), per model.

XNNPACK switches a part of the graph to NCHW sparse inference only when the part is a cluster it can run in
NCHW: from a 3×3 stride-2 conv on the 3-channel image (the stem) through 1×1 convs, 3×3/5×5 depthwise convs
with "same" padding, adds and activations, to a global mean; and only when the 1×1 convs of that cluster,
together, hold more than 2/3 zeros. Its sparse micro-kernels are ARM (NEON) and WebAssembly code: on x86 the
same file runs dense. This check reads the PyTorch model, so it is a prediction; the runtime's info log
("XNNPACK has switched to sparse inference mode!") is the authority on a phone.
"""

from __future__ import annotations

import torch.nn as nn

from .masks import sparse_layers

SPARSE_SHARE = 2 / 3  # zeros the cluster's 1x1 convs must exceed, together


def is_pointwise(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.Conv2d)
        and module.kernel_size == (1, 1)
        and module.stride == (1, 1)
        and module.groups == 1
        and module.padding in ((0, 0), 0)
    )


def xnnpack_sparse(model: nn.Module) -> dict:
    """Whether the network fits XNNPACK's sparse pattern, its 1×1 convs' zero share, and the verdict."""
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    reason = _pattern_problem(convs)
    pointwise = [m for _, m in convs if is_pointwise(m)]
    params = sum(m.weight.numel() for m in pointwise)
    zeros = sum(int((m.weight == 0).sum()) for m in pointwise)
    share = zeros / params if params else 0.0
    if reason is None and share <= SPARSE_SHARE:
        reason = f"its 1×1 convs hold {share:.1%} zeros, XNNPACK wants more than 2/3"
    return {
        "pattern": "stem 3×3/2 conv → 1×1 and depthwise convs → global mean",
        "pointwise_zero_share": round(share, 4),
        "sparse_inference": reason is None,
        "reason": reason or "fits: XNNPACK runs the 1×1 convs with sparse kernels on ARM and WebAssembly",
        "x86": "dense: XNNPACK's sparse kernels are ARM/WebAssembly code",
    }


def _pattern_problem(convs: list[tuple[str, nn.Conv2d]]) -> str | None:
    if not convs:
        return "no convs"
    _, stem = convs[0]
    if not (stem.in_channels == 3 and stem.kernel_size == (3, 3) and stem.stride == (2, 2)):
        return "its first conv is not a 3×3 stride-2 conv on the image"
    for name, m in convs[1:]:
        depthwise = m.groups == m.in_channels == m.out_channels and m.kernel_size in ((3, 3), (5, 5))
        if not (is_pointwise(m) or depthwise):
            return f"'{name}' is neither a 1×1 conv nor a 3×3/5×5 depthwise conv"
    return None  # the global mean is a function call in most models, not a module: taken as present


def layer_rows(model: nn.Module) -> list[dict]:
    """Per sparsifiable layer: its zeros and whether it is a 1×1 conv XNNPACK can run sparse."""
    rows = []
    for name, m in sparse_layers(model).items():
        zeros = int((m.weight == 0).sum())
        rows.append(
            {
                "layer": name,
                "shape": list(m.weight.shape),
                "sparsity": round(zeros / m.weight.numel(), 4),
                "xnnpack_sparse_kind": is_pointwise(m),
            }
        )
    return rows
