import copy

import pytest
import torch
from conftest import SkipAroundTheChain, redundant_pair

from mobileprune.models import build_model, classifier_module, resolve_spec
from mobileprune.prune.allocate.sensitivity import measure_sensitivity
from mobileprune.prune.block_chain import chain
from mobileprune.prune.compensation import InputStatistics
from mobileprune.prune.criteria import CRITERIA
from mobileprune.prune.graph import PruningGraph
from mobileprune.prune.masking import masked
from mobileprune.prune.reconstruct import refittable_layers
from mobileprune.prune.suffix_forward import SuffixForward


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


@pytest.mark.parametrize(
    "head, consumer, batches",
    [
        ((), "2", (3, 8)),
        # two images are two pooled samples, too few for 6 channels; their 2 × 25 positions before pooling
        # are enough, and the prediction fitted on positions holds for their average (it is linear)
        ((torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(6, 3)), "4", (1, 2)),
    ],
    ids=["conv", "classifier-after-global-pooling"],
)
def test_compensated_masking_charges_nothing_for_channels_the_kept_ones_express(head, consumer, batches):
    model = redundant_pair(*head)
    x = [torch.randn(batches[1], 4, 5, 5) for _ in range(batches[0])]
    group = PruningGraph(model, x[0][:1]).group("0")
    statistics = InputStatistics.measure(model, [consumer], x)
    assert consumer in statistics
    with torch.no_grad():
        reference = model(x[0])
        with masked(model, group, [4, 5], statistics):
            compensated = model(x[0])
        with masked(model, group, [4, 5]):
            zeroed = model(x[0])
        with masked(model, group, [3], statistics):
            not_redundant = model(x[0])
    torch.testing.assert_close(compensated, reference, atol=1e-3, rtol=1e-3)
    lost = float((zeroed - reference).abs().max())
    assert lost > 0.05  # plain zeros do lose the two channels
    if not head:  # channel 3 cannot be predicted: damage stays (two images' averages are too few to show it)
        assert float((not_redundant - reference).abs().max()) > 0.05


def test_compensated_probe_equals_the_best_refit_of_the_consumer():
    """What a compensated probe leaves is what the least-squares re-fit of the consumer on the kept channels
    (weights and bias) leaves, on the images the statistics came from."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 6, 1), torch.nn.ReLU(), torch.nn.Conv2d(6, 3, 1)).eval()
    x = [torch.randn(16, 4, 4, 4) for _ in range(2)]
    statistics = InputStatistics.measure(model, ["2"], x)
    group = PruningGraph(model, x[0][:1]).group("0")
    with torch.no_grad():
        hidden = torch.cat([model[1](model[0](v)).movedim(1, -1).reshape(-1, 6) for v in x]).double()
        target = torch.cat([model(v).movedim(1, -1).reshape(-1, 3) for v in x]).double()
        design = torch.cat([hidden[:, [0, 1, 2, 4, 5]], torch.ones(len(hidden), 1, dtype=hidden.dtype)], 1)
        refit_error = float((design @ torch.linalg.lstsq(design, target).solution - target).pow(2).sum())
        zero_error = float((hidden[:, 3:4] @ model[2].weight[:, 3, 0, 0][None].double()).pow(2).sum())
        with masked(model, group, [3], statistics):
            probe = torch.cat([model(v).movedim(1, -1).reshape(-1, 3) for v in x]).double()
    probe_error = float((probe - target).pow(2).sum())
    assert refit_error < 0.5 * zero_error  # the kept channels do carry part of channel 3
    assert probe_error == pytest.approx(refit_error, rel=0.02)


def test_a_covariance_from_too_few_samples_is_not_used():
    """A linear fed one vector per image: 8 images cannot predict 6 channels honestly."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3)).eval()
    few = InputStatistics.measure(model, ["2"], [torch.randn(8, 4)])
    enough = InputStatistics.measure(model, ["2"], [torch.randn(64, 4)])
    assert "2" not in few and "2" in enough


@pytest.mark.parametrize("arch", ["mobilenet_v2", "mobilenet_v3_small"])
def test_probes_from_cached_block_inputs_measure_what_whole_forward_passes_do(arch, monkeypatch):
    """Sensitivity runs each probe from its group's first consumer block on (suffix_forward.py): the curves
    are those of whole forward passes, and the probes really skip blocks."""
    spec = resolve_spec(arch, num_classes=10, width_mult=0.5)
    model = build_model(spec).eval()
    torch.manual_seed(0)
    batches = [torch.randn(4, 3, 32, 32) for _ in range(2)]
    graph = PruningGraph(model, batches[0][:1], [classifier_module(model, spec)])
    statistics = InputStatistics.measure(model, refittable_layers(model), batches)
    runs = []
    for _, block in chain(model):
        block.register_forward_pre_hook(lambda m, a: runs.append(len(a[0])))  # images through each block
    cached = measure_sensitivity(model, graph, CRITERIA.create("l1"), batches, statistics=statistics)
    cached_runs = sum(runs)
    monkeypatch.setattr("mobileprune.prune.suffix_forward.chain", lambda model: [])
    runs.clear()
    whole = measure_sensitivity(model, graph, CRITERIA.create("l1"), batches, statistics=statistics)
    assert list(cached) == list(whole) == [g.name for g in graph.groups]
    for name in whole:
        for (u1, d1), (u2, d2) in zip(cached[name].points, whole[name].points, strict=True):
            assert u1 == u2 and d1 == pytest.approx(d2, rel=1e-4, abs=1e-7), name
    assert cached_runs < 0.8 * sum(runs)


def test_probes_fall_back_to_whole_forward_passes_when_the_model_is_not_its_chain():
    torch.manual_seed(0)
    model = SkipAroundTheChain(pooled=True).eval()
    batches = [torch.randn(2, 4, 5, 5) for _ in range(2)]
    suffix = SuffixForward(model, batches)
    with torch.no_grad():
        got = suffix.outputs(suffix.start(["body.2"]))
        for out, x in zip(got, batches, strict=True):
            assert torch.allclose(out, model(x))
    assert not suffix.trusted


def test_statistics_leave_the_probe_images_and_their_mirrors_out():
    """Probes charge what the re-fit leaves on images it was not fitted on."""
    from mobileprune.prune.compensation import held_apart

    torch.manual_seed(0)
    images = torch.randn(6, 3, 4, 4)
    fitting = [images[:4], images[4:], images[:4].flip(-1), images[4:].flip(-1)]  # as fitting_batches builds them
    probes = [images[:2]]
    kept = torch.cat(held_apart(fitting, probes))
    assert len(kept) == 8
    for image in images[:2]:
        assert not any(torch.equal(image, k) or torch.equal(image.flip(-1), k) for k in kept)
    assert torch.cat(held_apart(fitting, [images])).shape == torch.cat(fitting).shape  # nothing left: keep all
