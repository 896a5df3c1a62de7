import pytest
import torch

from mobileprune.errors import UserError
from mobileprune.models import build_model, classifier_module, resolve_spec
from mobileprune.prune.allocate import allocate, allowed_removals
from mobileprune.prune.allocate.sensitivity import DamageCurve, SensitivityAllocation
from mobileprune.prune.allocate.uniform import UniformAllocation
from mobileprune.prune.cost import COST_MODELS
from mobileprune.prune.graph import PruningGraph


@pytest.fixture(scope="module")
def mnv1():
    spec = resolve_spec("mobilenet_v1", num_classes=10)
    model = build_model(spec).eval()
    x = torch.randn(1, 3, 32, 32)
    graph = PruningGraph(model, x, [classifier_module(model, spec)])
    return graph, lambda by="params": COST_MODELS.create(
        by, offered={"model": model, "example": x, "groups": graph.groups}
    )


@pytest.mark.parametrize("target", [0.84, 0.5, 0.3])
@pytest.mark.parametrize("by", ["params", "macs"])
def test_uniform_hits_the_target_with_equal_ratios(mnv1, target, by):
    graph, cost_model = mnv1
    alloc = allocate(graph.groups, cost_model(by), UniformAllocation(), target, round_to=8)
    assert abs(alloc.ratio - target) <= 0.01
    fractions = [alloc.removed.get(g.name, 0) / g.channels for g in graph.groups if g.channels >= 64]
    assert max(fractions) - min(fractions) <= 8 / 64 + 1e-9  # one round_to step in the narrowest layer
    for g in graph.groups:
        keep = g.channels - alloc.removed.get(g.name, 0)
        assert keep % 8 == 0 and keep >= 8


def test_sensitivity_spares_the_sensitive_layer(mnv1):
    graph, cost_model = mnv1
    sensitive = "blocks.3.2.conv_pw"
    curves = {
        g.name: DamageCurve(((0, 0.0), (len(g.units), 100.0 if g.name == sensitive else 1.0))) for g in graph.groups
    }
    alloc = allocate(graph.groups, cost_model(), SensitivityAllocation(curves, "test"), 0.7)
    assert abs(alloc.ratio - 0.7) <= 0.01
    assert alloc.removed.get(sensitive, 0) == 0
    assert sum(alloc.removed.values()) > 0


def test_unreachable_target_is_a_clear_error(mnv1):
    graph, cost_model = mnv1
    with pytest.raises(
        UserError, match=r"cannot reach params target 0.0500 with --round-to 128: the closest reachable is 0.0660"
    ):
        allocate(graph.groups, cost_model(), UniformAllocation(), 0.05, round_to=128)


def test_round_to_never_leaves_fewer_than_round_to_channels(mnv1):
    graph, _ = mnv1
    g = graph.group("blocks.0.0.conv_pw")  # 64 channels
    keeps = [g.channels - r for r in allowed_removals(g, 16)]
    assert keeps == [48, 32, 16]


def test_damage_curve_interpolates_and_extrapolates():
    curve = DamageCurve(((0, 0.0), (4, 1.0), (8, 3.0)))
    assert curve.at(2) == pytest.approx(0.5)
    assert curve.at(6) == pytest.approx(2.0)
    assert curve.at(10) == pytest.approx(4.0)


@pytest.mark.parametrize("unit", [1e-3, 1.0, 1e6])  # milliseconds saved by a step, MACs, ...
def test_damage_is_weighed_by_what_a_step_saves_in_any_unit(mnv1, unit):
    """A step saving 0.02 ms must count 10x cheaper than one saving 0.002 ms, as with MACs: a floor of 1
    on the saving once made `--by latency`'s damage per ms ignore the milliseconds altogether."""
    from mobileprune.prune.allocate.magnitude import MagnitudeAllocation

    graph, _ = mnv1
    group = graph.groups[0]
    sensitivity = SensitivityAllocation({group.name: DamageCurve(((0, 0.0), (8, 1.0)))}, "test")
    magnitude = MagnitudeAllocation()
    magnitude.cumulative = {group.name: [i / len(group.units) for i in range(len(group.units) + 1)]}
    for strategy in (sensitivity, magnitude):
        small, large = (strategy.step_cost(group, 0, 1, saved) for saved in (2 * unit, 20 * unit))
        assert small == pytest.approx(10 * large) and large > 0
