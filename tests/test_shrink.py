"""`shrink` end to end on reduced variants of every architecture the product promises."""

import pytest
import torch
from conftest import TINY_ARCHS

from mobileprune import ShrinkConfig, load_model, shrink
from mobileprune.prune.graph import is_depthwise
from mobileprune.train.data import make_loader, open_data


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
    result = shrink(loaded, ShrinkConfig(target=0.6, by="macs", allocation="sensitivity", calibration_images=8))
    assert abs(result.report["ratios"]["macs"] - 0.6) <= 0.01
    assert result.report["allocation"]["strategy"].startswith("sensitivity (data-free proxy")


def test_without_data_the_default_allocation_is_data_free_magnitude_and_keeps_the_macs():
    """Sensitivity measured on noise cut random-weight LCNet to 0.17 of its MACs for a 0.84 parameter target."""
    loaded = load_model("timm:lcnet_050", arch_kwargs={"num_classes": 10}, input_size=64)
    result = shrink(loaded, ShrinkConfig(target=0.84))
    assert result.report["allocation"]["strategy"].startswith("magnitude (data-free")
    assert abs(result.report["achieved"] - 0.84) <= 0.01 and result.report["ratios"]["macs"] > 0.7
    assert result.report["timings_s"]["allocation_s"] < 5  # no forward passes


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
    # settle the running statistics on the final weights (as a finished training run has them): 40 noisy
    # steps leave them lagging, and eval-mode outputs then depend on the thread count's rounding
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    with torch.no_grad():
        for batch in loader:
            if len(batch.labels) >= 2:
                model(batch.images)
    return model.eval()


def test_layerwise_retraining_on_labels_wins_back_accuracy(image_folder):
    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 2, "width_mult": 0.5})
    loaded.spec = type(loaded.spec)(**{**loaded.spec.to_json(), "input_size": 32})
    data = open_data(image_folder, 32, loaded.spec.mean, loaded.spec.std)
    _pretrain(loaded.model, data)
    config = ShrinkConfig(
        target=0.3, allocation="uniform", schedule="layerwise", steps_per_layer=2, epochs=10, batch_size=16, workers=0
    )
    config.train.optimizer, config.train.lr = "adamw", 1e-3  # sgd at 0.005 recovered at 2 threads, not at 1
    result = shrink(loaded, config, data)
    acc = result.report["accuracy"]
    assert acc["before"]["top1"] >= 0.9  # red vs blue is learnable
    assert acc["after_retraining"]["top1"] >= 0.9
    assert acc["after_retraining"]["top1"] >= acc["after_pruning"]["top1"]
    assert result.report["retraining"]["skipped_images"] >= 1  # the corrupt JPEG, counted not fatal
    assert [e["group"] for e in result.report["schedule_log"]]  # one entry per pruned layer


def test_unlabeled_folder_needs_distillation(tmp_path):
    from conftest import write_images

    from mobileprune.errors import UserError

    write_images(tmp_path, {"flat": (128, 128, 128)}, 12)  # images directly in tmp_path/flat: no labels
    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 10, "width_mult": 0.25})
    data = open_data(tmp_path / "flat", 32, loaded.spec.mean, loaded.spec.std)
    assert not data.train.labeled
    with pytest.raises(UserError, match="no class folders, so no labels: add --distill"):
        shrink(loaded, ShrinkConfig(target=0.8, allocation="uniform"), data)


@pytest.mark.parametrize("distill_loss", ["centered", "kl"])
def test_distillation_pulls_the_pruned_model_back_to_the_teacher(image_folder, distill_loss):
    import copy

    import torch.nn.functional as F

    from mobileprune.models import classifier_module
    from mobileprune.prune.plan import ChannelPlan

    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 2, "width_mult": 0.5})
    loaded.spec = type(loaded.spec)(**{**loaded.spec.to_json(), "input_size": 32})
    data = open_data(image_folder, 32, loaded.spec.mean, loaded.spec.std)
    teacher = copy.deepcopy(_pretrain(loaded.model, data))
    config = ShrinkConfig(
        target=0.5,  # at 0.3 of the parameters some teachers (pretraining orders) could not be followed at all
        allocation="uniform",
        schedule="oneshot",
        epochs=8,
        distill=True,
        batch_size=16,
        workers=0,
        reconstruct=False,  # this test is about distillation alone
    )
    config.train.lr = 1e-3  # KL to the teacher fell to < 0.01 of the damage for three pretraining seeds
    config.train.distill_loss = distill_loss
    result = shrink(loaded, config, data)
    assert result.report["retraining"]["mode"] == f"distillation from the unpruned model ({distill_loss} loss)"

    pruned_only = ChannelPlan(result.plan.steps).replay(
        copy.deepcopy(teacher), result.example_input, [classifier_module(teacher, result.spec)]
    )
    x = torch.stack([data.calibration_set()[i][0] for i in range(0, 40, 2)])

    def kl_to_teacher(model):
        with torch.no_grad():
            student, target = F.log_softmax(model(x), 1), F.log_softmax(teacher(x), 1)
            return float(F.kl_div(student, target, log_target=True, reduction="batchmean"))

    damage = kl_to_teacher(pruned_only)
    assert damage > 1e-3  # pruning to 0.5 really moved the model away from its teacher
    assert kl_to_teacher(result.model) < 0.5 * damage


def test_accuracy_is_not_measured_against_foreign_labels(image_folder):
    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 10, "width_mult": 0.25})
    loaded.spec = type(loaded.spec)(**{**loaded.spec.to_json(), "input_size": 32})
    data = open_data(image_folder, 32, loaded.spec.mean, loaded.spec.std)  # 2 classes, model has 10
    config = ShrinkConfig(target=0.8, allocation="uniform", schedule="oneshot", distill=True, workers=0)
    result = shrink(loaded, config, data)
    accuracy = result.report["accuracy"]
    assert accuracy["before"] is None and accuracy["after_retraining"] is None
    assert "2 classes, the model predicts 10" in accuracy["note"]
