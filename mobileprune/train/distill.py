"""Distillation from the unpruned model: what the pruned student is taught when there are no labels.

`centered` (the default) removes each class's batch-mean logit from teacher and student before the KL.
Images unlike the teacher's training data (CIFAR upsampled for an ImageNet model, the usual case when
the labels are gone) give a per-class logit gap between pruned and unpruned model that is specific to
those images; plain KL teaches exactly that gap first, and it does not hold on the app's images.
Centring hides it, so only how the logits vary from image to image is learned. With images from the
teacher's own domain the mean gap is real information: `kl` keeps it. The measurements are in
benchmarks/results/shrink_mobilenet_v2.json and the README's "Measured on real weights".
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

DISTILL_LOSSES = ("centered", "kl")


def _batch_mean(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=0, keepdim=True)


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float,
    kind: str,
    batch_mean: Callable[[torch.Tensor], torch.Tensor] = _batch_mean,
) -> torch.Tensor:
    """KL(teacher ‖ student) at `temperature`; "centered" first removes each class's batch-mean logit.

    A batch of one image has nothing to centre against (centring would zero every logit), so it is
    compared uncentred. Under torchrun `batch_mean` is the global batch's (distributed.global_mean).
    """
    if kind not in DISTILL_LOSSES:
        raise ValueError(f"unknown distillation loss '{kind}' (choose from {', '.join(DISTILL_LOSSES)})")
    if kind == "centered" and len(student) > 1:
        student = student - batch_mean(student)
        teacher = teacher - batch_mean(teacher)
    t = temperature
    target = F.log_softmax(teacher / t, dim=1)
    log_probs = F.log_softmax(student / t, dim=1)
    return F.kl_div(log_probs, target, log_target=True, reduction="batchmean") * t * t
