"""Gradients on calibration images for the data criteria (taylor: summed; hessian: mean squared per image)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import CalibrationData


def fill_gradients(model: nn.Module, data: CalibrationData | None, squared: bool, max_images: int = 0) -> None:
    """Fill every parameter's .grad: the summed gradient, or (squared) the mean squared per-image one."""
    if not data:
        raise RuntimeError("this criterion needs calibration images: call prepare() with data")
    was_training = model.training
    model.eval()  # BN uses its running statistics, as at inference
    params = [p for p in model.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
        p.grad = None
    accumulated = [torch.zeros_like(p) for p in params]
    count = 0
    with torch.enable_grad():
        for x, t in zip(data.batches, data.targets, strict=True):
            if not squared:
                F.cross_entropy(model(x), t, reduction="sum").backward()
                continue
            for i in range(len(x)):
                if count >= max_images:
                    break
                model.zero_grad(set_to_none=True)
                F.cross_entropy(model(x[i : i + 1]), t[i : i + 1]).backward()
                for acc, p in zip(accumulated, params, strict=True):
                    if p.grad is not None:
                        acc += p.grad.detach() ** 2
                count += 1
    if squared:
        for acc, p in zip(accumulated, params, strict=True):
            p.grad = acc / max(count, 1)
    for p, flag in zip(params, flags, strict=True):
        p.requires_grad_(flag)
    model.train(was_training)
