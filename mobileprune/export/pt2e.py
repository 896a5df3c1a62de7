"""int8 through PyTorch's PT2E quantization, shared by the formats whose converters take its output
(TFLite via litert-torch, ExecuTorch via XNNPACK): capture, observe, convert. Each format brings its own
quantizer, because each runtime's kernels take their own schemes."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn


def quantized_module(
    model: nn.Module, example: torch.Tensor, quantizer, calibration: np.ndarray | None, fold: bool = True
) -> nn.Module:
    """`model` captured at `example`'s shape, its observers run on every calibration image (the captured
    graph has the example's batch of one) or, without images, once on the example (per-channel weight
    observers need one pass), then converted to quantize/dequantize ops around int8 weights."""
    from torchao.quantization.pt2e import quantize_pt2e

    captured = torch.export.export(model.eval(), (example,)).module()
    prepared = quantize_pt2e.prepare_pt2e(captured, quantizer)
    with torch.no_grad():
        if calibration is not None and len(calibration) > 0:
            for image in calibration:
                prepared(torch.from_numpy(np.ascontiguousarray(image[None], dtype=np.float32)))
        else:
            prepared(example)
    return quantize_pt2e.convert_pt2e(prepared, fold_quantize=fold)
