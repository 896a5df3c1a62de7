import copy

import torch

from mobileprune.models import build_model, classifier_module, resolve_spec
from mobileprune.prune.allocate.sensitivity import measure_sensitivity
from mobileprune.prune.criteria import CRITERIA
from mobileprune.prune.graph import PruningGraph
from mobileprune.prune.masking import masked


def test_masking_consumers_equals_really_pruning():
    spec = resolve_spec("mobilenet_v3_small", num_classes=10, width_mult=0.5)
    model = build_model(spec).eval()
    x = torch.randn(4, 3, 64, 64)
    graph = PruningGraph(model, x[:1], [classifier_module(model, spec)])
    l1 = CRITERIA.create("l1")
    for group in graph.groups[::4]:
        channels = group.channels_to_remove(l1.scores(graph, group.name), len(group.units) // 2)
        with torch.no_grad(), masked(model, group, channels):
            zeroed = model(x)
        pruned = copy.deepcopy(model)
        PruningGraph(pruned, x[:1], [classifier_module(pruned, spec)]).prune(group.name, channels)
        with torch.no_grad():
            torch.testing.assert_close(zeroed, pruned(x), atol=1e-5, rtol=1e-4)


def test_curves_start_at_zero_and_never_fall():
    spec = resolve_spec("mobilenet_v2", num_classes=10, width_mult=0.25)
    model = build_model(spec).eval()
    x = torch.randn(1, 3, 32, 32)
    graph = PruningGraph(model, x, [classifier_module(model, spec)])
    curves = measure_sensitivity(model, graph, CRITERIA.create("l1"), [torch.randn(8, 3, 32, 32)])
    assert set(curves) == {g.name for g in graph.groups}
    for curve in curves.values():
        assert curve.points[0] == (0, 0.0)
        damages = [d for _, d in curve.points]
        assert damages == sorted(damages)
    assert any(c.points[-1][1] > 0 for c in curves.values())
