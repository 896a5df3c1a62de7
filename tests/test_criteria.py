"""Every criterion ranks a planted dead filter last; obs ranks by what a re-fit leaves; global allocation; the bn
criterion's warnings."""

import warnings

import pytest
import torch
import torch.nn as nn

from mobileprune import ShrinkConfig, load_model, shrink
from mobileprune.models import classifier_module
from mobileprune.prune.criteria import CRITERIA, CalibrationData
from mobileprune.prune.graph import PruningGraph

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


@pytest.mark.parametrize("criterion", ["l1", "bn", "taylor", "hessian", "ucb", "obs"])
def test_criterion_ranks_a_dead_filter_last(criterion):
    model, graph, name, data = _model_with_dead_filter()
    c = CRITERIA.create(criterion)
    c.prepare(model, data)
    scores = c.scores(graph, name)
    assert scores.shape == (graph.channels(name),)
    assert int(torch.argmin(scores)) == DEAD, (criterion, scores[:8])
    assert float(scores[DEAD]) <= 1e-6 * float(scores.max())


def test_random_criterion_is_a_seeded_baseline():
    _, graph, name, _ = _model_with_dead_filter()
    a, b = CRITERIA.create("random").scores(graph, name), CRITERIA.create("random").scores(graph, name)
    assert torch.equal(a, b) and len(set(a.tolist())) == len(a)  # reproducible, no ties
    assert "random" in CRITERIA and "taylor" in CRITERIA.names()


def test_bn_warns_on_folded_batch_norm_checkpoints():
    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 10, "width_mult": 0.25})  # every gamma = 1
    with pytest.warns(UserWarning, match="every batch-norm scale"):
        CRITERIA.create("bn").prepare(loaded.model, None)


def test_global_allocation_respects_the_per_layer_cap_and_hits_the_target():
    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 10, "width_mult": 0.5})
    loaded.spec = type(loaded.spec)(**{**loaded.spec.to_json(), "input_size": 64})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = shrink(
            loaded,
            ShrinkConfig(target=0.6, allocation="global", criterion="l1", allocation_options={"max_fraction": 0.5}),
        )
    assert abs(result.report["achieved"] - 0.6) <= 0.01
    for g in result.report["groups"]:
        assert g["after"] >= g["before"] * 0.5 - 8, g  # no group lost more than half (+ one rounding step)
    assert result.report["allocation"]["strategy"].startswith("global (l1 scores, at most 50%")


@pytest.mark.parametrize("criterion", ["taylor", "hessian", "random", "obs"])
def test_every_criterion_shrinks_end_to_end(criterion):
    loaded = load_model("mobilenet_v3_small", arch_kwargs={"num_classes": 10, "width_mult": 0.5})
    loaded.spec = type(loaded.spec)(**{**loaded.spec.to_json(), "input_size": 64})
    result = shrink(loaded, ShrinkConfig(target=0.8, criterion=criterion, calibration_images=8))
    assert abs(result.report["achieved"] - 0.8) <= 0.01
    assert result.model(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_sparsity_training_spreads_bn_scales_so_bn_can_rank(image_folder):
    from mobileprune.train.data import open_data

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
    from mobileprune.train.data import open_data

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


def _train_gates(model, gates, data, steps: int) -> None:
    """Gates alone (weights frozen): a planted dead channel gets no gradient, only the sparse penalty."""
    import torch.nn.functional as F

    x, t = torch.cat(data.batches), torch.cat(data.targets)
    for _ in range(steps):
        gates.zero_grad()
        F.cross_entropy(model(x), t).backward()
        gates.step()


def test_sss_gates_rank_a_dead_filter_last_and_fold_into_the_weights():
    torch.manual_seed(0)
    model, graph, name, data = _model_with_dead_filter()
    c = CRITERIA.create("sss")
    gates = c.sparsity_regulariser(model, graph, 0.002)
    gates.lr = 0.01
    _train_gates(model, gates, data, steps=100)
    gates.settle()
    x = torch.cat(data.batches)
    with torch.no_grad():
        gated = model(x)
    gates.finish()  # folded into the consumers' weights, hooks gone
    with torch.no_grad():
        assert torch.allclose(model(x), gated, atol=1e-5)
    assert not any(m._forward_pre_hooks for m in model.modules())
    learned = gates.values()[name]
    assert learned[DEAD] == 0 and int((learned != 0).sum()) >= len(learned) // 4  # dead is zero, others held
    scores = c.scores(graph, name)
    assert int(torch.argmin(scores)) == DEAD and float(scores[DEAD]) <= 1e-6 * float(scores.max())


def test_sss_scores_follow_channels_through_earlier_prunes():
    torch.manual_seed(0)
    model, graph, name, data = _model_with_dead_filter()
    c = CRITERIA.create("sss")
    gates = c.sparsity_regulariser(model, graph, 0.002)
    _train_gates(model, gates, data, steps=5)
    gates.finish()
    full = c.scores(graph, name)
    graph.prune(name, [0, 2])  # the greedy schedule asks again after a group lost channels
    assert torch.equal(c.scores(graph, name)[:4], full[[1, 3, 4, 5]])


def test_sss_needs_sparsity_training():
    from mobileprune.errors import UserError

    with pytest.raises(UserError, match="--sparsity-train"):
        ShrinkConfig(target=0.8, criterion="sss").validate()


def test_sss_shrinks_end_to_end_with_gates_trained_alongside_the_weights(image_folder):
    from mobileprune.train.data import open_data

    torch.manual_seed(0)
    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 2, "width_mult": 0.25})
    loaded.spec = type(loaded.spec)(**{**loaded.spec.to_json(), "input_size": 32})
    data = open_data(image_folder, 32, loaded.spec.mean, loaded.spec.std)
    config = ShrinkConfig(
        target=0.8, criterion="sss", allocation="global", schedule="oneshot", sparsity_train=3.0, l1_gamma=1e-3
    )
    result = shrink(loaded, config, data)
    assert abs(result.report["achieved"] - 0.8) <= 0.01
    assert result.report["accuracy"]["after_sparsity_training"] is not None
    assert not any(m._forward_pre_hooks for m in result.model.modules())  # gates folded away
    assert result.model(torch.randn(1, 3, 32, 32)).shape == (1, 2)


@pytest.mark.parametrize(
    "arch", ["mobilenet_v3_small", "timm:ghostnet_050", "torchvision:shufflenet_v2_x0_5", "torchvision:resnet18"]
)
def test_sss_gates_fold_exactly_on_every_architecture(arch):
    from conftest import TINY_ARCHS

    from mobileprune.prune.sparsity import ChannelGates

    torch.manual_seed(0)
    loaded = load_model(arch, arch_kwargs={"num_classes": 10, **TINY_ARCHS[arch]})
    model = loaded.model.eval()
    x = torch.randn(2, 3, 64, 64)
    graph = PruningGraph(model, x[:1], [classifier_module(model, loaded.spec)])
    gates = ChannelGates(model, graph, 0.0)
    with torch.no_grad():
        plain = model(x)
        for g in gates.gates.values():
            g.uniform_(0.0, 2.0)
        gates._proximal = {n: g.detach().clone() for n, g in gates.gates.items()}
        gated = model(x)
    gates.finish()
    with torch.no_grad():
        scale = float(gated.abs().max())
        assert float((gated - plain).abs().max()) > 1e-4 * scale  # the gates did act
        assert float((model(x) - gated).abs().max()) <= 1e-5 * scale


def test_random_and_ucb_criteria_take_the_run_seed():
    for name in ("random", "ucb"):
        assert ShrinkConfig(target=0.8, criterion=name, seed=7).make_criterion().seed == 7
    graph_scores = []
    for seed in (1, 1, 2):
        model = load_model("mobilenet_v2", arch_kwargs={"num_classes": 10, "width_mult": 0.25}).model.eval()
        graph = PruningGraph(model, torch.randn(1, 3, 32, 32), [model.classifier[1]])
        criterion = ShrinkConfig(target=0.8, criterion="random", seed=seed).make_criterion()
        graph_scores.append(criterion.scores(graph, graph.groups[0].name))
    assert torch.equal(graph_scores[0], graph_scores[1]) and not torch.equal(graph_scores[0], graph_scores[2])


def test_ucb_and_greedy_probes_from_cached_block_inputs_match_whole_forward_passes(monkeypatch):
    """ucb's pulls and the greedy schedule's measured steps run only the blocks after the probed group's
    first consumer (suffix_forward.py); with the chain disabled they run whole forward passes."""
    from mobileprune.prune.allocate.measured import MeasuredAllocation

    model, graph, _, data = _model_with_dead_filter()
    small = sorted((g for g in graph.groups if len(g.units) >= 4), key=lambda g: len(g.units))[:6]
    groups = sorted(small, key=lambda g: graph.groups.index(g))[-2:]  # two late groups: most blocks skipped

    def measure():
        ucb = CRITERIA.create("ucb", pulls_per_channel=1.0)
        ucb.prepare(model, data)
        scores = [ucb.scores(graph, g.name) for g in groups]
        greedy = MeasuredAllocation(model, graph, CRITERIA.create("l1"), data)
        greedy.begin_round({})
        costs = [greedy.step_cost(g, 0, 2, 1.0) for g in groups]
        return scores, costs

    scores, costs = measure()
    monkeypatch.setattr("mobileprune.prune.suffix_forward.chain", lambda model: [])
    whole_scores, whole_costs = measure()
    for a, b in zip(scores, whole_scores, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert costs == pytest.approx(whole_costs, rel=1e-4, abs=1e-7)
    assert any(c > 0 for c in costs)


def _linear_pair(producer: torch.Tensor, consumer: torch.Tensor):
    """conv1 (4 → 4 channels, 1×1, linear: `producer`) feeding conv2 (4 → rows of `consumer`) and a protected
    classifier, with calibration images."""
    rows = consumer.shape[0]
    model = nn.Sequential(
        nn.Conv2d(4, 4, 1), nn.Conv2d(4, rows, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(rows, 2)
    )
    with torch.no_grad():
        model[0].weight.copy_(producer[:, :, None, None])
        model[0].bias.zero_()
        model[1].weight.copy_(consumer[:, :, None, None])
    x = torch.randn(16, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    graph = PruningGraph(model, x[:1], [model[4]])
    return model, graph, CalibrationData.from_model(model, [x[:8], x[8:]])


def test_obs_removes_a_channel_the_others_predict_where_l1_removes_the_smallest():
    """conv1's channel 3 is channel 0 plus channel 1, so a re-fit of conv2 on any three of {0, 1, 3} recovers the
    fourth exactly; channel 2 carries information of its own but the smallest weights."""
    producer = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 1, 0, 0]])
    consumer = torch.tensor([[2.0, -3.0, 0.3, 4.0], [-2.5, 2.0, -0.3, 3.0], [3.0, 2.0, 0.3, -5.0]])
    model, graph, data = _linear_pair(producer, consumer)
    first = {}
    for name in ("l1", "obs"):
        criterion = CRITERIA.create(name)
        criterion.prepare(model, data)
        scores = criterion.scores(graph, "0")
        first[name] = int(torch.argmin(scores))
    assert first["l1"] == 2 and first["obs"] in (0, 1, 3)
    assert float(scores.min()) < 1e-3 * float(scores.max())  # free to remove: the re-fit makes up for it


def test_obs_scores_the_error_a_least_squares_refit_leaves():
    """The first channel obs removes costs, relative to the consumer's output variance, what re-fitting the
    consumer (weights and bias) on the other channels actually leaves on the statistics' images."""
    generator = torch.Generator().manual_seed(1)
    producer = torch.eye(4) + 0.5 * torch.randn(4, 4, generator=generator)  # correlated, none redundant
    model, graph, data = _linear_pair(producer, torch.randn(6, 4, generator=generator))
    criterion = CRITERIA.create("obs")
    criterion.prepare(model, data)
    scores = criterion.scores(graph, "0")
    first = int(torch.argmin(scores))
    with torch.no_grad():
        x = torch.cat([model[0](b) for b in data.batches]).movedim(1, -1).reshape(-1, 4).double()
        y = x @ model[1].weight[:, :, 0, 0].double().T
        kept = [c for c in range(4) if c != first]
        design = torch.cat([x[:, kept], torch.ones(len(x), 1, dtype=x.dtype)], 1)
        refit = torch.linalg.lstsq(design, y).solution
        left = (y - design @ refit).pow(2).sum() / (y - y.mean(0)).pow(2).sum()
    assert float(left) > 1e-3, float(left)
    assert float(scores[first]) == pytest.approx(float(left), rel=0.05)  # the criterion's small ridge: a bit more


def test_obs_ranks_on_the_reconstruction_images_held_apart_from_the_probes(image_folder, monkeypatch):
    from mobileprune.prune.criteria.obs import OBSCriterion
    from mobileprune.train.data import open_data

    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 2, "width_mult": 0.25})
    loaded.spec = type(loaded.spec)(**{**loaded.spec.to_json(), "input_size": 32})
    data = open_data(image_folder, 32, loaded.spec.mean, loaded.spec.std)
    seen = []
    prepare = OBSCriterion.prepare
    monkeypatch.setattr(OBSCriterion, "prepare", lambda self, model, d: seen.append(d) or prepare(self, model, d))
    config = ShrinkConfig(target=0.7, by="macs", criterion="obs", calibration_images=8, batch_size=8, workers=0)
    result = shrink(loaded, config, data)
    assert abs(result.report["achieved"] - 0.7) <= 0.01
    calibration = seen[0]
    probes = {image.numpy().tobytes() for batch in calibration.batches for image in batch}
    fitted = [image for batch in calibration.fitting for image in batch]
    # every training image but the 8 probe images, and each one's mirror image (reconstruction's fitting set)
    assert len(fitted) == 2 * (len(data.train) - 1 - 8)  # one training file is corrupt
    assert not probes & {image.numpy().tobytes() for image in fitted}
