"""Every criterion ranks a planted dead filter last; global allocation; the bn criterion's warnings."""

import warnings

import pytest
import torch
import torch.nn as nn

from mobileprune import ShrinkConfig, load_model, shrink
from mobileprune.criteria import CRITERIA, CalibrationData, get_criterion
from mobileprune.graph import PruningGraph
from mobileprune.presets import classifier_module

DEAD = 5  # the planted channel


def _model_with_dead_filter(arch: str = "mobilenet_v2"):
    """A tiny model whose group `features.2.conv.0.0` has channel DEAD exactly zero everywhere it reaches."""
    loaded = load_model(arch, arch_kwargs={"num_classes": 10, "width_mult": 0.5})
    model = loaded.model.eval()
    for m in model.modules():  # trained-looking batch norms: distinct scales, real statistics
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    x = torch.randn(8, 3, 64, 64)
    for m in model.modules():  # running statistics of these inputs: activations in range, not saturated
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        model.train()(x)
    model.eval()
    graph = PruningGraph(model, x[:1], [classifier_module(model, loaded.spec)])
    name = "features.2.conv.0.0"
    # zero filter, BN gamma and beta, depthwise filter and the consumer's input column: dead everywhere
    for dep, idxs in graph.tp_group(name, [DEAD]):
        module = dep.target.module
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data[idxs] = 0
            module.bias.data[idxs] = 0
        elif isinstance(module, nn.Conv2d):
            consumer = "in_channels" in dep.handler.__class__.__name__.lower() or "in" in str(dep.handler)
            is_input_side = consumer and module.groups == 1 and module is not model.features[2].conv[0][0]
            if is_input_side:
                module.weight.data[:, idxs] = 0
            else:
                module.weight.data[idxs] = 0
    return model, graph, name, CalibrationData.from_model(model, [x[:4], x[4:]])


@pytest.mark.parametrize("criterion", ["l1", "bn", "taylor", "hessian", "ucb"])
def test_criterion_ranks_a_dead_filter_last(criterion):
    model, graph, name, data = _model_with_dead_filter()
    c = get_criterion(criterion)
    c.prepare(model, data)
    scores = c.scores(graph, name)
    assert scores.shape == (graph.channels(name),)
    assert int(torch.argmin(scores)) == DEAD, (criterion, scores[:8])
    assert float(scores[DEAD]) <= 1e-6 * float(scores.max())


def test_random_criterion_is_a_seeded_baseline():
    _, graph, name, _ = _model_with_dead_filter()
    a, b = get_criterion("random").scores(graph, name), get_criterion("random").scores(graph, name)
    assert torch.equal(a, b) and len(set(a.tolist())) == len(a)  # reproducible, no ties
    assert "random" in CRITERIA and "taylor" in CRITERIA.names()


def test_bn_warns_on_folded_batch_norm_checkpoints():
    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 10, "width_mult": 0.25})  # every gamma = 1
    with pytest.warns(UserWarning, match="every batch-norm scale"):
        get_criterion("bn").prepare(loaded.model, None)


def test_global_allocation_respects_the_per_layer_cap_and_hits_the_target():
    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 10, "width_mult": 0.5})
    loaded.spec = type(loaded.spec)(**{**loaded.spec.to_json(), "input_size": 64})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = shrink(loaded, ShrinkConfig(target=0.6, allocation="global", criterion="l1", max_layer_ratio=0.5))
    assert abs(result.report["achieved"] - 0.6) <= 0.01
    for g in result.report["groups"]:
        assert g["after"] >= g["before"] * 0.5 - 8, g  # no group lost more than half (+ one rounding step)
    assert result.report["allocation"]["strategy"].startswith("global (l1 scores, at most 50%")


@pytest.mark.parametrize("criterion", ["taylor", "hessian", "random"])
def test_every_criterion_shrinks_end_to_end(criterion):
    loaded = load_model("mobilenet_v3_small", arch_kwargs={"num_classes": 10, "width_mult": 0.5})
    loaded.spec = type(loaded.spec)(**{**loaded.spec.to_json(), "input_size": 64})
    result = shrink(loaded, ShrinkConfig(target=0.8, criterion=criterion, calibration_images=8))
    assert abs(result.report["achieved"] - 0.8) <= 0.01
    assert result.model(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_sparsity_training_spreads_bn_scales_so_bn_can_rank(image_folder):
    from mobileprune.data import open_data

    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 2, "width_mult": 0.25})  # every gamma = 1
    loaded.spec = type(loaded.spec)(**{**loaded.spec.to_json(), "input_size": 32})
    data = open_data(image_folder, 32, loaded.spec.mean, loaded.spec.std)
    config = ShrinkConfig(
        target=0.8, criterion="bn", allocation="global", schedule="oneshot", sparsity_train=5.0, l1_gamma=0.05
    )
    config.train.lr = 1e-2
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "every gamma is equal" warning after training
        result = shrink(loaded, config, data)
    gammas = torch.cat([m.weight.detach() for m in result.model.modules() if isinstance(m, nn.BatchNorm2d)])
    assert float(gammas.std()) > 1e-3 and float(gammas.abs().mean()) < 1.0  # spread out, pulled towards 0
    assert result.report["accuracy"]["after_sparsity_training"] is not None
    assert abs(result.report["achieved"] - 0.8) <= 0.01


def test_greedy_schedule_measures_its_way_to_the_target(image_folder):
    from mobileprune.data import open_data

    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 2, "width_mult": 0.25})
    loaded.spec = type(loaded.spec)(**{**loaded.spec.to_json(), "input_size": 32})
    data = open_data(image_folder, 32, loaded.spec.mean, loaded.spec.std)
    config = ShrinkConfig(target=0.9, schedule="greedy", steps_per_layer=1, calibration_images=8)
    result = shrink(loaded, config, data)
    assert abs(result.report["achieved"] - 0.9) <= 0.01
    log = result.report["schedule_log"]
    assert len(log) >= 2 and all("loss_increase" in e and "loss" in e for e in log)  # fine-tuned between steps
    assert result.report["allocation"]["strategy"] == "greedy (measured at every step)"
    assert sum(result.report["allocation"]["removed_units"].values()) > 0
