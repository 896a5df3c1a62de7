"""`shrink` end to end on reduced variants of every architecture the product promises."""

import pytest
import torch
from conftest import TINY_ARCHS

from mobileprune import ShrinkConfig, load_model, shrink
from mobileprune.data import make_loader, open_data
from mobileprune.graph import is_depthwise


def _check_pruned(result, arch, target, round_to=8):
    model = result.model
    x = torch.randn(2, 3, 64, 64)
    assert model(x).shape == (2, 10)
    assert abs(result.report["achieved"] - target) <= 0.01
    for g in result.report["groups"]:
        if g["after"] != g["before"]:
            assert g["after"] % round_to == 0 and g["after"] >= round_to, g
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d) and m.groups > 1:
            assert is_depthwise(m), f"{arch}: grouped conv {m} lost its depthwise shape"


@pytest.mark.parametrize("arch", list(TINY_ARCHS))
def test_every_architecture_shrinks_to_084_without_data(arch):
    loaded = load_model(arch, arch_kwargs={"num_classes": 10, **TINY_ARCHS[arch]})
    loaded.spec = type(loaded.spec)(**{**loaded.spec.to_json(), "input_size": 64})
    result = shrink(loaded, ShrinkConfig(target=0.84, allocation="uniform"))
    _check_pruned(result, arch, 0.84)
    assert result.report["retraining"]["done"] is False


def test_sensitivity_allocation_and_macs_target():
    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 10, "width_mult": 0.5})
    loaded.spec = type(loaded.spec)(**{**loaded.spec.to_json(), "input_size": 64})
    result = shrink(loaded, ShrinkConfig(target=0.6, by="macs", calibration_images=8))
    assert abs(result.report["ratios"]["macs"] - 0.6) <= 0.01
    assert result.report["allocation"]["strategy"].startswith("sensitivity (data-free proxy")


def _pretrain(model, data, steps=40):
    """A user's trained model: plain training with live batch norm until it solves the task."""
    loader = make_loader(data.train, 16, True, workers=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    done = 0
    while done < steps:
        for batch in loader:
            if len(batch.labels) < 2:  # batch norm in train mode needs two samples
                continue
            loss = torch.nn.functional.cross_entropy(model(batch.images), batch.labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
    return model.eval()


def test_layerwise_retraining_on_labels_wins_back_accuracy(image_folder):
    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 2, "width_mult": 0.5})
    loaded.spec = type(loaded.spec)(**{**loaded.spec.to_json(), "input_size": 32})
    data = open_data(image_folder, 32, loaded.spec.mean, loaded.spec.std)
    _pretrain(loaded.model, data)
    config = ShrinkConfig(target=0.3, allocation="uniform", steps_per_layer=2, epochs=10, batch_size=16, workers=0)
    config.train.optimizer, config.train.lr = "sgd", 0.005
    result = shrink(loaded, config, data)
    acc = result.report["accuracy"]
    assert acc["before"]["top1"] >= 0.9  # red vs blue is learnable
    assert acc["after_retraining"]["top1"] >= 0.9
    assert acc["after_retraining"]["top1"] >= acc["after_pruning"]["top1"]
    assert result.report["retraining"]["skipped_images"] >= 1  # the corrupt JPEG, counted not fatal
    assert [e["group"] for e in result.report["schedule_log"]]  # one entry per pruned layer


def test_distillation_learns_from_unlabeled_images(tmp_path):
    from conftest import write_images

    write_images(tmp_path / "flat_tmp", {"x": (128, 128, 128)}, 40)
    flat = tmp_path / "flat"
    (tmp_path / "flat_tmp" / "x").rename(flat)  # images directly in the folder: no labels
    loaded = load_model("mobilenet_v3_small", arch_kwargs={"num_classes": 10, "width_mult": 0.25})
    loaded.spec = type(loaded.spec)(**{**loaded.spec.to_json(), "input_size": 32})
    data = open_data(flat, 32, loaded.spec.mean, loaded.spec.std)
    config = ShrinkConfig(
        target=0.7, allocation="uniform", schedule="oneshot", epochs=4, distill=True, batch_size=8, workers=0
    )
    result = shrink(loaded, config, data)
    assert result.report["retraining"]["mode"] == "distillation from the unpruned model"
    assert result.report["retraining"]["steps"] > 0
