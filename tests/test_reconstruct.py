"""Reconstruction (least-squares re-fit after pruning) and allocation in rounds, on tiny models."""

import copy

import pytest
import torch
from conftest import SkipAroundTheChain, redundant_pair, write_images

from mobileprune import ShrinkConfig, load_model, shrink
from mobileprune.errors import UserError
from mobileprune.progress import Progress
from mobileprune.prune.block_chain import capture_input, capture_output
from mobileprune.prune.graph import PruningGraph
from mobileprune.prune.layer_inputs import LayerInputs, LayerOutputs
from mobileprune.prune.reconstruct import reconstruct, refittable_layers
from mobileprune.prune.skip_connections import skip_blocks
from mobileprune.train.data import open_data


def _tiny(seed=0):
    torch.manual_seed(seed)
    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 10, "width_mult": 0.25}, input_size=32)
    model = loaded.model.eval()
    with torch.no_grad():  # give batch norm non-trivial statistics, as a trained model has
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    return model


def _batches(n=4, size=32):
    torch.manual_seed(1)
    return [torch.randn(8, 3, size, size) for _ in range(n)]


def _logit_error(model, original, batches):
    with torch.no_grad():
        return sum(float((model(x) - original(x)).pow(2).sum()) for x in batches)


def test_reconstruction_lowers_every_layers_error_and_the_logits_error():
    original = _tiny()
    pruned = copy.deepcopy(original)
    graph = PruningGraph(pruned, torch.randn(1, 3, 32, 32), [pruned.classifier[-1]])
    for group in graph.groups[::2]:  # half the groups lose a quarter of their channels
        channels = graph.channels(group.name)
        if channels >= 8:
            graph.prune(group.name, list(range(0, channels, 4)))
    batches = _batches()
    before = _logit_error(pruned, original, batches)
    fits = reconstruct(pruned, original, refittable_layers(pruned), batches, graph.kept_outputs)
    assert len(fits) == len(refittable_layers(pruned))
    for fit in fits:
        assert fit.error_after <= fit.error_before + 1e-9, fit
    assert any(fit.error_after < 0.9 * fit.error_before for fit in fits)
    assert _logit_error(pruned, original, batches) < before  # measured independently of the fit's own numbers


def test_reconstruction_changes_nothing_when_nothing_was_removed():
    original = _tiny()
    copy_ = copy.deepcopy(original)
    fits = reconstruct(copy_, original, refittable_layers(copy_), _batches(2))
    for fit in fits:
        assert fit.error_before < 1e-10 and fit.error_after < 1e-10
    for (name, a), (_, b) in zip(original.state_dict().items(), copy_.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


def test_residual_blocks_are_found_by_their_arithmetic_not_their_class():
    model = _tiny()
    layers = refittable_layers(model)
    found = skip_blocks(model, layers, _batches(1)[0])
    residual = [name for name, m in model.named_modules() if getattr(m, "use_res_connect", False)]
    assert residual and sorted(s.block for s in found.values()) == sorted(residual)
    for layer, skip in found.items():
        inside = [n for n in layers if n.startswith(skip.block + ".")]
        assert layer == inside[-1]  # the block's last re-fitted layer
    # the same block with a non-linearity after its last layer does not add an affine map of it
    plain = copy.deepcopy(model)
    block = plain.features[3]
    block.conv.append(torch.nn.ReLU())
    assert "features.3.conv.2" not in skip_blocks(plain, layers, _batches(1)[0])
    # on a 1×1 map of two images any block's output minus its input is "affine" in two numbers: not a skip
    v1 = load_model("mobilenet_v1", arch_kwargs={"num_classes": 2}).model.eval()
    assert skip_blocks(v1, refittable_layers(v1), torch.randn(2, 3, 32, 32)) == {}


def _block_error(model, original, block, batches):
    with torch.no_grad():
        return sum(
            float((capture_output(model, block, x)[0] - capture_output(original, block, x)[0]).pow(2).sum())
            for x in batches
        )


def test_a_residual_blocks_last_layer_is_fitted_to_the_blocks_output():
    """The block's input carries an error that no layer inside the block made (an earlier producer, not
    re-fitted); fitting the last layer to the block's output cancels part of it, fitting it to its own
    output cannot touch it."""
    original = _tiny()
    with torch.no_grad():
        for m in original.modules():  # a lively stream, so the hidden channels can predict its error
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(1.0, 2.0)
    errors = {}
    for through in (False, True):
        pruned = copy.deepcopy(original)
        torch.manual_seed(3)
        with torch.no_grad():
            pruned.features[2].conv[2].weight.mul_(1 + 0.3 * torch.randn_like(pruned.features[2].conv[2].weight))
        batches, unseen = _batches(4), [torch.randn(8, 3, 32, 32) for _ in range(2)]
        errors["unfitted"] = _block_error(pruned, original, "features.3", unseen)
        layers = ["features.3.conv.0.0", "features.3.conv.2"]
        reconstruct(pruned, original, layers, batches, ridge=1e-4, through_skips=through)
        errors[through] = _block_error(pruned, original, "features.3", unseen)
    assert errors[True] < 0.9 * errors[False] < errors["unfitted"], errors


@pytest.fixture
def colour_data(tmp_path):
    colours = {f"c{i}": (25 * i, 255 - 25 * i, (80 * i) % 255) for i in range(10)}
    write_images(tmp_path / "train", colours, 4)
    return open_data(tmp_path, 32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.mark.parametrize("rounds, mirror", [(1, True), (3, False)])
def test_rounds_of_allocation_hit_the_target_and_report_the_reconstruction(colour_data, rounds, mirror):
    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 10, "width_mult": 0.5}, input_size=32)
    config = ShrinkConfig(
        target=0.5,
        by="macs",
        schedule="oneshot",
        rounds=rounds,
        calibration_images=8,
        reconstruct_images=16,
        reconstruct_mirror=mirror,
        distill=True,
        workers=0,
    )
    lines: list[str] = []
    progress = Progress()
    progress.log = lines.append
    result = shrink(loaded, config, colour_data, progress=progress)
    report = result.report
    assert abs(report.achieved - 0.5) <= 0.01
    assert report.allocation["strategy"].endswith(f"in {rounds} rounds") == (rounds > 1)
    started = [line for line in lines if line.startswith("round ")]  # each later round says how long is left
    assert len(started) == rounds - 1 and all(" a round so far; about " in line for line in started)
    fitted = 32 if mirror else 16  # each image and, by default, its mirror image
    probed = 16 if mirror else 8  # the 8 probe images (and mirrors) are left out of the probes' statistics
    assert f"predicted from kept ones ({fitted - probed} other images" in report.allocation["strategy"]
    assert report.reconstruction["layers"] > 0 and report.reconstruction["images"] == fitted
    assert report.reconstruction["mirrored"] == mirror
    assert report.reconstruction["mean_error_after"] <= report.reconstruction["mean_error_before"]
    # the removed units are summed over the rounds: the plan's removals add up to the channels lost
    lost = sum(g["before"] - g["after"] for g in report.groups)
    assert lost > 0


@pytest.mark.parametrize(
    "settings, has_data, expected",
    [
        ({"target": 0.5}, True, 4),  # a deep cut measured on images: re-measure
        ({"target": 0.7}, True, 4),
        ({"target": 0.84}, True, 1),  # gentle: one measurement is as good
        ({"target": 0.5}, False, 1),  # data-free: nothing to re-measure on
        ({"target": 0.5, "allocation": "uniform"}, True, 1),  # does not measure
        ({"target": 0.5, "schedule": "greedy"}, True, 1),  # decides its own amounts
        ({"target": 0.5, "by": "latency"}, True, 4),  # later rounds predict from the first round's tables
        ({"target": 0.84, "rounds": 3}, True, 3),  # a number is kept as given
    ],
)
def test_rounds_auto_re_measures_only_deep_cuts_measured_on_images(settings, has_data, expected):
    assert ShrinkConfig(**settings).rounds_for(has_data) == expected


def test_rounds_auto_is_the_default_and_says_so(colour_data):
    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 10, "width_mult": 0.25}, input_size=32)
    config = ShrinkConfig(target=0.6, by="macs", calibration_images=8, reconstruct_images=8, distill=True, workers=0)
    report = shrink(loaded, config, colour_data).report
    assert report.allocation["strategy"].endswith("in 4 rounds")
    assert abs(report.achieved - 0.6) <= 0.01


@pytest.mark.parametrize("value", ["0", "two", 1.5])
def test_rounds_refuses_anything_but_a_whole_number_or_auto(value):
    with pytest.raises(UserError, match="--rounds must be a whole number of at least 1 or auto"):
        ShrinkConfig(target=0.5, rounds=int(value) if value == "0" else value).validate()


def test_reconstruction_is_skipped_when_turned_off(colour_data):
    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 10, "width_mult": 0.25}, input_size=32)
    config = ShrinkConfig(target=0.7, by="macs", schedule="oneshot", reconstruct=False, distill=True, workers=0)
    report = shrink(loaded, config, colour_data).report
    assert report.reconstruction == {} and "reconstruct_s" not in report.timings_s
    assert "predicted from kept ones" not in report.allocation["strategy"]  # plain zeros: nothing re-fits them


def _counting_forwards(model):
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(1))
    return calls


def test_layer_inputs_run_block_by_block_and_match_real_forward_passes():
    model = _tiny()
    batches = _batches(3)
    layers = refittable_layers(model)
    inputs = LayerInputs(model, batches)
    calls = _counting_forwards(model)
    got = {name: list(inputs.of(name)) for name in layers}
    # whole-model forwards: the first block's input once per batch, one check per layer in the chain, and
    # plain captures for the classifier (after the chain) -- instead of one per layer and batch
    assert inputs.trusted and layers[-1] == "classifier.1"
    assert len(calls) == len(batches) + (len(layers) - 1) + len(batches)
    for name in layers:
        for tensor, x in zip(got[name], batches, strict=True):
            assert torch.allclose(tensor, capture_input(model, name, x)[0], atol=1e-6), name


def test_layer_inputs_fall_back_to_forward_passes_when_the_model_is_not_its_chain():
    torch.manual_seed(0)
    model = SkipAroundTheChain().eval()
    batches = [torch.randn(2, 4, 5, 5) for _ in range(2)]
    inputs = LayerInputs(model, batches)
    for name in ["body.1", "body.2", "body.3"]:
        for got, x in zip(inputs.of(name), batches, strict=True):
            assert torch.allclose(got, capture_input(model, name, x)[0]), name
    assert not inputs.trusted


def _hooked_outputs(model, name, batches):
    seen = []
    handle = model.get_submodule(name).register_forward_hook(lambda m, a, y: seen.append(y))
    with torch.no_grad():
        for x in batches:
            model(x)
    handle.remove()
    return seen


@pytest.mark.parametrize("model_kind", ["chain", "skip_around_the_chain"])
def test_layer_outputs_come_block_by_block_and_match_real_forward_passes(model_kind):
    if model_kind == "chain":
        model, batches, layers = _tiny(), _batches(3), None
        layers = refittable_layers(model)
    else:
        torch.manual_seed(0)
        model, batches = SkipAroundTheChain().eval(), [torch.randn(2, 4, 5, 5) for _ in range(2)]
        layers = ["body.1", "body.3"]
    outputs = LayerOutputs(model, batches, layers, lambda name, b, y: (b, y.clone()))
    for name in layers:
        got = outputs.of(name)
        assert [b for b, _ in got] == list(range(len(batches)))  # keep() is told which batch it sees
        for (_, tensor), real in zip(got, _hooked_outputs(model, name, batches), strict=True):
            assert torch.allclose(tensor, real, atol=1e-6), name
    assert outputs.trusted == (model_kind == "chain")


def test_rounds_from_the_command_line_is_a_number_or_auto(run_cli, tmp_path):
    res = run_cli("shrink", "mobilenet_v2", "--rounds", "two", "--out", tmp_path / "o", "--quiet")
    assert res.code == 2 and "--rounds must be a whole number of at least 1 or auto, not 'two'" in res.err
    assert len(res.err.strip().splitlines()) == 1


def test_a_classifier_after_global_pooling_is_fitted_at_the_positions_before_pooling():
    """Two calibration images are two pooled samples: too few to find what the classifier lost. Their 2 × 25
    positions recover it exactly (the removed channels are multiples of kept ones), and on new images too."""
    original = redundant_pair(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(6, 3))
    pruned = copy.deepcopy(original)
    PruningGraph(pruned, torch.randn(1, 4, 5, 5)).prune("0", [4, 5])
    fits = reconstruct(pruned, original, ["4"], [torch.randn(2, 4, 5, 5)])
    new = torch.randn(16, 4, 5, 5)
    with torch.no_grad():
        error, signal = float((pruned(new) - original(new)).pow(2).sum()), float(original(new).pow(2).sum())
    assert fits[0].error_after < 1e-3 * fits[0].error_before
    assert error < 1e-3 * signal


def test_the_map_before_global_pooling_is_found_even_when_its_values_are_tiny():
    """A freshly initialised MobileNetV2's last maps are ~1e-8: the match must be relative to their scale, or
    the conv before the activation would pass for the pooled map."""
    from mobileprune.prune.global_pooling import pooled_from

    model = load_model("mobilenet_v2", arch_kwargs={"width_mult": 0.25}, input_size=64).model.eval()
    assert pooled_from(model, "classifier.1", torch.randn(2, 3, 64, 64)) == "features.18.2"
    assert pooled_from(model, "features.18.0", torch.randn(2, 3, 64, 64)) is None  # not a linear


def test_moments_are_float64_products_from_float32_without_losing_the_spread_to_the_offset():
    """Activations far from zero (post-ReLU means) make a plain float32 product round the covariance away."""
    from mobileprune.prune.moments import cross_moments

    torch.manual_seed(0)
    a, b = torch.rand(40000, 64) * 2 + 6, torch.rand(40000, 8) - 9
    exact = a.double().T @ b.double()
    mean_a, mean_b = a.double().mean(0), b.double().mean(0)

    def covariance_error(product: torch.Tensor) -> float:
        truth = exact / len(a) - torch.outer(mean_a, mean_b)
        return float((product / len(a) - torch.outer(mean_a, mean_b) - truth).norm() / truth.norm())

    ours, plain = cross_moments(a, b), (a.T @ b).double()
    assert ours.dtype == torch.float64 and torch.allclose(ours, exact, rtol=1e-6)
    assert covariance_error(ours) < 1e-5 < covariance_error(plain) / 10
    assert torch.allclose(cross_moments(a, a), a.double().T @ a.double(), rtol=1e-6)
