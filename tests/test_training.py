"""The distillation loss: what centring the logits removes, and what it keeps."""

import pytest
import torch

from mobileprune.train.distill import distillation_loss


def _logits(seed: int, n: int = 8, classes: int = 20) -> torch.Tensor:
    return torch.randn(n, classes, generator=torch.Generator().manual_seed(seed)) * 3


def test_centered_loss_ignores_a_per_class_offset_that_plain_kl_punishes():
    """The per-class gap measured on foreign images is what centring hides from the student."""
    teacher = _logits(0)
    offset = torch.linspace(-4, 4, teacher.shape[1])  # a class-dependent bias, the same on every image
    assert distillation_loss(teacher + offset, teacher, 2.0, "centered").item() == pytest.approx(0.0, abs=1e-5)
    assert distillation_loss(teacher + offset, teacher, 2.0, "kl").item() > 0.1


def test_centered_loss_still_teaches_how_logits_vary_between_images():
    teacher, student = _logits(0), _logits(1)
    student.requires_grad_(True)
    loss = distillation_loss(student, teacher, 2.0, "centered")
    assert loss.item() > 0.1
    loss.backward()
    grad = student.grad
    assert grad.abs().sum() > 0
    # the gradient has no per-class mean: nothing pushes a class up or down on every image alike
    assert grad.sum(dim=0).abs().max().item() < 1e-6


def test_a_single_image_is_compared_uncentred():
    teacher, student = _logits(0, n=1), _logits(1, n=1)
    centered = distillation_loss(student, teacher, 2.0, "centered")
    assert centered.item() > 0.1
    assert centered.item() == pytest.approx(distillation_loss(student, teacher, 2.0, "kl").item())


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="unknown distillation loss 'mse'"):
        distillation_loss(_logits(0), _logits(1), 2.0, "mse")
