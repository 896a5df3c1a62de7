import pytest
import torch
import torch.nn as nn

from mobileprune.errors import UserError
from mobileprune.models import build_model, classifier_module, resolve_spec
from mobileprune.prune.criteria import CRITERIA
from mobileprune.prune.graph import PruningGraph, is_depthwise


def tiny(arch: str, **kw):
    spec = resolve_spec(arch, num_classes=10, **kw)
    model = build_model(spec).eval()
    x = torch.randn(2, 3, 64, 64)
    return model, spec, x, PruningGraph(model, x[:1], [classifier_module(model, spec)])


def test_depthwise_is_never_a_root_and_follows_its_producer():
    model, _, x, graph = tiny("mobilenet_v2", width_mult=0.25)
    roots = [model.get_submodule(g.name) for g in graph.groups]
    assert not any(is_depthwise(r) for r in roots)
    # features.2.conv.0.0 expands 8 → 48 channels and feeds depthwise features.2.conv.1.0
    graph.prune("features.2.conv.0.0", list(range(16)))
    dw = model.get_submodule("features.2.conv.1.0")
    assert (dw.in_channels, dw.out_channels, dw.groups) == (32, 32, 32)
    assert model.get_submodule("features.2.conv.0.1").num_features == 32  # its batch norm
    assert model.get_submodule("features.2.conv.2").in_channels == 32  # the consumer
    assert model(x).shape == (2, 10)


def test_classifier_outputs_and_network_input_are_never_pruned():
    model, spec, _, graph = tiny("mobilenet_v3_small", width_mult=0.25)
    classifier = classifier_module(model, spec)
    stem = model.get_submodule("features.0.0")
    for g in graph.groups:
        for m in g.members:
            module = model.get_submodule(m.module)
            assert not (module is classifier and m.side == "out")
            assert not (module is stem and m.side == "in")


def test_residual_add_prunes_every_operand_together():
    model, _, x, graph = tiny("mobilenet_v2", width_mult=0.25)
    # the 8-channel residual stream of stage 3 is produced by two project convs (features.4/5/6 add)
    group = next(g for g in graph.groups if {"features.4.conv.2", "features.5.conv.2"} <= g.modules())
    graph.prune(group.name, [0, 1])
    outs = {model.get_submodule(n).out_channels for n in ("features.4.conv.2", "features.5.conv.2")}
    assert len(outs) == 1
    assert model(x).shape == (2, 10)


def test_squeeze_excite_gate_stays_consistent():
    model, _, x, graph = tiny("mobilenet_v3_large", width_mult=0.25)
    se_groups = [g for g in graph.groups if any(".fc1" in m.module for m in g.members)]
    assert se_groups
    l1 = CRITERIA.create("l1")
    for g in se_groups:
        graph.prune(g.name, g.channels_to_remove(l1.scores(graph, g.name), len(g.units) // 2))
    for block in model.modules():
        if hasattr(block, "fc1") and hasattr(block, "fc2"):
            assert block.fc2.out_channels == block.fc1.in_channels
    assert model(x).shape == (2, 10)


def test_shufflenet_channel_shuffle_is_a_barrier_but_branches_prune():
    model, _, x, graph = tiny("torchvision:shufflenet_v2_x0_5")
    names = [g.name for g in graph.groups]
    assert "stage2.0.branch2.0" in names  # the branch-internal 1x1 conv
    assert "stage2.0.branch2.5" not in names  # its output crosses the shuffle
    for g in graph.groups:
        graph.prune(g.name, list(range(len(g.units) // 2)))
    assert model(x).shape == (2, 10)


def test_ghostnet_tied_channels_come_out_in_units():
    _, _, _, graph = tiny("timm:ghostnet_050")
    stem = graph.group("conv_stem")
    assert stem.unit_size == 2 and len(stem.units) == stem.channels // 2


def test_untraceable_model_names_the_op():
    from untraceable_models import inline_shufflenet

    with pytest.raises(UserError, match=r"cannot follow this model at op _Reshape_\d+"):
        PruningGraph(inline_shufflenet(), torch.randn(1, 3, 32, 32), [])


def test_l1_ranks_a_dead_filter_last():
    model, _, _, graph = tiny("mobilenet_v2", width_mult=0.25)
    name = "features.2.conv.0.0"
    with torch.no_grad():
        model.get_submodule(name).weight[5].zero_()
        model.get_submodule("features.2.conv.0.1").weight[5] = 0  # and its BN scale
    scores = CRITERIA.create("l1").scores(graph, name)
    assert int(torch.argmin(scores)) == 5
    assert graph.group(name).channels_to_remove(scores, 1) == [5]


def test_plain_sequential_without_classifier_still_has_groups():
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 4, 1)).eval()
    graph = PruningGraph(model, torch.randn(1, 3, 16, 16), [model[3]])
    assert [g.name for g in graph.groups] == ["0"]
