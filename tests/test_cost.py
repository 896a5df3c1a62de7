import random

import pytest
import torch
from conftest import TINY_ARCHS

from mobileprune.models import build_model, classifier_module, resolve_spec
from mobileprune.prune.cost import LayerCosts, count_cost
from mobileprune.prune.criteria import CRITERIA
from mobileprune.prune.graph import PruningGraph


def test_macs_match_the_mobilenet_papers():
    for arch, params, macs in (("mobilenet_v1", 4_231_976, 569e6), ("mobilenet_v2", 3_504_872, 300e6)):
        model = build_model(resolve_spec(arch))
        cost = count_cost(model, torch.randn(1, 3, 224, 224))
        assert cost.params == params
        assert abs(cost.macs - macs) / macs < 0.01


@pytest.mark.parametrize("arch", list(TINY_ARCHS))
def test_prediction_equals_the_really_pruned_model(arch):
    spec = resolve_spec(arch, num_classes=10, **TINY_ARCHS[arch])
    model = build_model(spec).eval()
    x = torch.randn(1, 3, 64, 64)
    graph = PruningGraph(model, x, [classifier_module(model, spec)])
    cost_model = LayerCosts(model, x, graph.groups)
    rng = random.Random(1)
    removed = {g.name: rng.randint(0, len(g.units) // 2) for g in graph.groups}
    predicted = cost_model.predict(removed)
    l1 = CRITERIA.create("l1")
    for g in graph.groups:
        graph.prune(g.name, g.channels_to_remove(l1.scores(graph, g.name), removed[g.name]))
    assert count_cost(model, x) == predicted
    assert predicted.params < cost_model.baseline.params
