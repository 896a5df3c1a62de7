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


@pytest.mark.parametrize(
    "distill,student_dropout,dropout_trains", [(True, False, False), (True, True, True), (False, False, True)]
)
def test_student_dropout_off_turns_dropout_off_only_while_distilling(
    tmp_path, distill, student_dropout, dropout_trains
):
    """`student_dropout=False`: a distilled student learns without dropout, as the teacher answers; with labels
    alone dropout stays on (it is a regulariser there, not noise between two models)."""
    from conftest import write_images

    from mobileprune import load_model
    from mobileprune.train.data import make_loader, open_data
    from mobileprune.train.loop import TrainConfig, Trainer

    write_images(tmp_path / "train", {"dog": (200, 0, 0), "ship": (0, 0, 200)}, 4)
    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 2, "width_mult": 0.25}, input_size=32)
    data = open_data(tmp_path, 32, loaded.spec.mean, loaded.spec.std)
    teacher = load_model("mobilenet_v2", arch_kwargs={"num_classes": 2, "width_mult": 0.25}, input_size=32).model
    seen: list[bool] = []
    dropout = loaded.model.classifier[0]
    assert isinstance(dropout, torch.nn.Dropout) and dropout.p > 0
    dropout.register_forward_hook(lambda module, args, out: seen.append(module.training))
    config = TrainConfig(lr=1e-3, distill=distill, student_dropout=student_dropout)
    trainer = Trainer(make_loader(data.train, 4, True, workers=0), config, teacher if distill else None)
    trainer.train(loaded.model, 2)
    assert seen and all(mode == dropout_trains for mode in seen[-2:])  # the two steps (the layout try runs eval)
    assert not loaded.model.training  # the model comes back in eval mode
