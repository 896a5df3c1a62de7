"""Channels-last weights during heavy CPU work: faster, never different, never left behind."""

from __future__ import annotations

import torch
import torch.nn as nn
from conftest import write_images

from mobileprune import load_model
from mobileprune.channels_last import channels_last
from mobileprune.train.data import make_loader, open_data
from mobileprune.train.loop import TrainConfig, Trainer


def _is_channels_last(conv: nn.Conv2d) -> bool:
    return conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()


def _tiny_mobilenet() -> nn.Module:
    return load_model("mobilenet_v2", arch_kwargs={"num_classes": 10, "width_mult": 0.25}, input_size=32).model.eval()


def test_weights_are_channels_last_inside_standard_after_and_outputs_agree():
    model = _tiny_mobilenet()
    x = torch.randn(4, 3, 32, 32)
    conv = model.features[0][0]  # the stem, 3 -> 8 channels, 3x3: its two layouts differ in memory
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        expected = model(x)
        with channels_last(x, model):
            assert _is_channels_last(conv)
            inside = model(x)
    assert torch.allclose(inside, expected, rtol=1e-4, atol=1e-5)
    assert all(p.is_contiguous() for p in model.parameters())  # exporters and safetensors need it
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class ViewFlatten(nn.Module):
    """A conv net whose flatten is a `.view`: it cannot run on channels-last activations."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, 2)

    def forward(self, x):
        y = self.conv(x)
        return self.head(y.view(y.shape[0], -1))


def test_a_model_that_needs_standard_strides_keeps_them():
    model = ViewFlatten().eval()
    x = torch.randn(2, 3, 8, 8)
    with channels_last(x, model):
        assert not _is_channels_last(model.conv)
        assert model(x).shape == (2, 2)


def test_an_inner_context_leaves_the_layout_to_the_outer_one():
    model = _tiny_mobilenet()
    x = torch.randn(2, 3, 32, 32)
    conv = model.features[0][0]
    with channels_last(x, model):
        with channels_last(x, model):
            assert _is_channels_last(conv)
        assert _is_channels_last(conv)  # still: the inner context did not switch it, so it does not switch back
    assert not _is_channels_last(conv)


def test_retraining_on_the_cpu_keeps_frozen_batch_norm_frozen(tmp_path):
    """Trying the layout runs the model in eval mode; the trainer's frozen batch norm must not come back to
    train mode with the rest of the model (its running statistics would drift)."""
    write_images(tmp_path / "train", {"dog": (200, 0, 0), "ship": (0, 0, 200)}, 4)
    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 2, "width_mult": 0.25}, input_size=32)
    data = open_data(tmp_path, 32, loaded.spec.mean, loaded.spec.std)
    bn = loaded.model.features[1].conv[0][1]
    stats = (bn.running_mean.clone(), int(bn.num_batches_tracked))
    trainer = Trainer(make_loader(data.train, 4, True, workers=0), TrainConfig(lr=1e-3))
    trainer.train(loaded.model, 3)
    assert torch.equal(bn.running_mean, stats[0]) and int(bn.num_batches_tracked) == stats[1]
    assert all(p.is_contiguous() for p in loaded.model.parameters())
