"""sparsify: masks held through training and saving, the cubic schedule, OBS on a toy layer, bad input,
the sparse .tflite, and the XNNPACK verdict."""

from __future__ import annotations

import copy
import math
import platform

import numpy as np
import pytest
import torch
import torch.nn as nn

from mobileprune import api
from mobileprune.errors import UserError
from mobileprune.sparsify.config import SparsifyConfig
from mobileprune.sparsify.masks import held, sparse_layers, sparsity_of
from mobileprune.sparsify.methods.gradual import cubic_sparsity, prune_steps
from mobileprune.sparsify.obs import obs_sparsify, saliency
from mobileprune.sparsify.selection import layer_sparsities, masks_at
from mobileprune.sparsify.xnnpack import xnnpack_sparse
from mobileprune.train.data import make_loader
from mobileprune.train.loop import TrainConfig, Trainer

TINY = {"arch_kwargs": {"width_mult": 0.25}, "num_classes": 2, "input_size": 32}


def _tiny():
    return api.load_model("mobilenet_v2", **TINY)


def _data(root):
    return api.open_shrink_data(_tiny().spec, root, None, distill=False)[0]


def test_sparse_layers_leave_the_stem_and_depthwise_convs_dense():
    model = _tiny().model
    layers = sparse_layers(model)
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert convs[0][0] not in layers  # the stem
    assert all(m.groups == 1 for m in layers.values() if isinstance(m, nn.Conv2d))
    assert any(isinstance(m, nn.Linear) for m in layers.values())


def test_masked_weights_stay_exactly_zero_through_training_and_a_save_load(image_folder, tmp_path):
    loaded = _tiny()
    data = _data(image_folder)
    result = api.sparsify(loaded, SparsifyConfig(0.7, method="magnitude", epochs=3, train=TrainConfig(lr=1e-2)), data)
    assert result.report.retraining["steps"] == 6  # 3 epochs of 2 batches of 32 (49 files)
    masks = result.masks
    before = {n: m.weight.detach().clone() for n, m in sparse_layers(_tiny().model).items()}
    moved = 0
    for name, module in sparse_layers(result.model).items():
        assert torch.equal(module.weight[~masks[name]], torch.zeros_like(module.weight[~masks[name]]))
        moved += int((module.weight[masks[name]] != before[name][masks[name]]).sum())
    assert moved > 0  # the kept weights did train
    assert result.report.sparsity["achieved"] == pytest.approx(0.7, abs=1e-3)
    out = api.save_output(result, tmp_path / "sparse")
    back = api.load_model(str(out))
    assert set(back.masks) == set(masks) and all(torch.equal(back.masks[n], masks[n]) for n in masks)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(back.model(x), result.model(x))
    again = api.sparsify(back, SparsifyConfig(0.8, method="magnitude"), None)  # masks only grow
    assert all(bool((again.masks[n] <= masks[n]).all()) for n in masks)


def test_a_tampered_mask_file_is_refused_in_one_line(image_folder, tmp_path):
    from safetensors.torch import load_file, save_file

    result = api.sparsify(_tiny(), SparsifyConfig(0.5, method="magnitude"), None)
    out = api.save_output(result, tmp_path / "sparse")
    masks = load_file(out / "masks.safetensors")
    key = next(iter(masks))
    masks[key] = torch.zeros_like(masks[key])  # everything masked, but the weights are not zero
    save_file(masks, out / "masks.safetensors")
    with pytest.raises(UserError, match="nonzero weights where masked"):
        api.load_model(str(out))


def test_cubic_schedule_values():
    assert cubic_sparsity(0, 100, 0.8) == 0.0
    assert cubic_sparsity(50, 100, 0.8) == pytest.approx(0.8 * (1 - 0.5**3))
    assert cubic_sparsity(25, 100, 0.9, initial=0.5) == pytest.approx(0.9 - 0.4 * 0.75**3)
    assert cubic_sparsity(100, 100, 0.8) == cubic_sparsity(500, 100, 0.8) == 0.8
    assert prune_steps(100, 4) == [25, 50, 75, 100]
    assert prune_steps(3, 20) == [1, 2, 3]  # never more prunes than steps


def test_gradual_ends_exactly_at_the_target_with_growing_masks(image_folder):
    data = _data(image_folder)
    config = SparsifyConfig(0.8, method="gradual", epochs=4, method_options={"prunes": 4, "ramp": 0.5})
    result = api.sparsify(_tiny(), config, data)
    sparsity = result.report.sparsity
    assert sparsity["achieved"] == pytest.approx(0.8, abs=1e-3)
    values = list(sparsity["schedule"].values())
    assert values == sorted(values) and values[-1] == pytest.approx(0.8)
    assert result.report.accuracy.after_pruning is None  # no one-shot model exists to score


def test_lottery_rewinds_to_the_pretrained_weights(image_folder):
    data, loaded = _data(image_folder), _tiny()
    start = {n: m.weight.detach().clone() for n, m in sparse_layers(loaded.model).items()}
    config = SparsifyConfig(0.6, method="lottery", epochs=2, method_options={"rounds": 2}, train=TrainConfig(lr=0))
    result = api.sparsify(loaded, config, data)  # lr 0: training changes nothing, rewinding must not either
    for name, module in sparse_layers(result.model).items():
        assert torch.equal(module.weight, start[name] * result.masks[name])
    assert [r["sparsity"] for r in result.report.sparsity["rounds"]] == pytest.approx([1 - 0.4**0.5, 0.6], abs=1e-3)


def test_obs_is_exact_on_a_toy_linear_layer_with_a_known_hessian():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(10, 4, bias=False)).double()
    x = torch.randn(400, 10, dtype=torch.double)
    x[:, 1] = x[:, 0] + 0.05 * x[:, 1]  # two correlated inputs: magnitude and OBS disagree about them
    hessian = x.T @ x / len(x)
    weight = model[0].weight.detach().clone()
    damped = hessian + 0.01 * hessian.diagonal().mean() * torch.eye(10, dtype=torch.double)
    masks, rows = obs_sparsify(model, {"0": model[0]}, [x], 0.5)
    keep = masks.masks["0"]
    assert (~keep).sum() == 20
    chosen = saliency(weight, damped)
    expected_keep = masks_at({"0": chosen}, 0.5).masks["0"]
    assert torch.equal(keep, expected_keep)  # removed = lowest w²/[H⁻¹]qq
    new = model[0].weight.detach()
    for r in range(4):  # each row is the exact minimiser of its output error with the removed weights at zero
        kept, gone = keep[r].nonzero().flatten(), (~keep[r]).nonzero().flatten()
        best = weight[r, kept] + torch.linalg.solve(damped[kept][:, kept], damped[kept][:, gone] @ weight[r, gone])
        assert torch.allclose(new[r, kept], best, atol=1e-10)
        assert torch.equal(new[r, gone], torch.zeros_like(new[r, gone]))
    assert rows[0].error_compensated < rows[0].error_zeroed


def test_selection_scopes():
    scores = {"a": torch.arange(10.0), "b": 100 + torch.arange(10.0)}
    layer = masks_at(scores, 0.5, "layer")
    assert int(layer.masks["a"].sum()) == int(layer.masks["b"].sum()) == 5
    overall = masks_at(scores, 0.5, "global")
    assert int(overall.masks["a"].sum()) == 0 and bool(overall.masks["b"].all())


def test_erk_keeps_small_layers_denser_at_the_same_total():
    shapes = {"small": (8, 8, 1, 1), "mid": (96, 16, 1, 1), "big": (320, 960, 1, 1)}
    shares = layer_sparsities(shapes, 0.7, "erk")
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    zeros = sum(shares[n] * sizes[n] for n in shapes)
    assert zeros == pytest.approx(0.7 * sum(sizes.values()), rel=1e-6)
    assert 0 <= shares["small"] <= shares["mid"] < shares["big"] < 1  # the small ones may stay dense


def test_mask_hold_keeps_zeros_under_sgd_momentum(image_folder):
    model = _tiny().model
    layers = sparse_layers(model)
    masks = masks_at({n: m.weight.abs() for n, m in layers.items()}, 0.5)
    loader = make_loader(_data(image_folder).train, 16, True)
    trainer = Trainer(loader, TrainConfig(optimizer="sgd", lr=0.1))
    trainer.train(model, 2)  # momentum built up before the masks
    with held(model, masks) as hold:
        trainer.train(model, 3, regulariser=hold)
    assert sparsity_of(model) == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize("bad", ["1", "-0.1", "abc", "nan"])
def test_bad_sparsity_is_one_line_exit_2(run_cli, bad, tmp_path):
    r = run_cli("sparsify", "mobilenet_v2", "--num-classes", "2", "--sparsity", bad, "--out", tmp_path / "o")
    assert r.code == 2
    assert r.err.strip().count("\n") == 0 and "--sparsity" in r.err


def test_methods_that_need_training_or_images_say_so(run_cli, tmp_path):
    r = run_cli("sparsify", "mobilenet_v2", "--num-classes", "2", "--sparsity", "0.5", "--out", tmp_path / "o")
    assert r.code == 2 and "--epochs" in r.err  # gradual is the default
    r = run_cli("sparsify", "mobilenet_v2", "--num-classes", "2", "--sparsity", "0.5", "--method", "obs")
    assert r.code == 2 and "calibration images" in r.err
    r = run_cli("sparsify", "mobilenet_v2", "--sparsity", "0.5", "--method", "nope")
    assert r.code == 2 and "unknown method 'nope'" in r.err


def test_hybrid_counts_removed_filters_in_the_overall_sparsity(image_folder):
    config = SparsifyConfig(0.7, method="hybrid", epochs=1, method_options={"structured": 0.6})
    result = api.sparsify(_tiny(), config, _data(image_folder))
    sparsity = result.report.sparsity
    assert sparsity["of_original"] == pytest.approx(0.7, abs=0.01)
    assert sparsity["structured"]["params_ratio"] < 0.7 and result.plan.steps
    assert result.report.ratios["macs"] < 1


def test_xnnpack_verdict_follows_its_two_thirds_rule():
    model = api.load_model("mobilenet_v2", arch_kwargs={"width_mult": 0.25}, num_classes=10).model
    dense = xnnpack_sparse(model)
    assert not dense["sparse_inference"] and "2/3" in dense["reason"]
    layers = sparse_layers(model)
    masks_at({n: m.weight.abs() for n, m in layers.items()}, 0.8).apply(model)
    assert xnnpack_sparse(model)["sparse_inference"]
    resnet = api.load_model("torchvision:resnet18", num_classes=10).model
    assert "not a 3×3 stride-2 conv" in xnnpack_sparse(resnet)["reason"]  # its stem is 7×7


def test_sparse_tflite_runs_like_pytorch_and_reports_sparsity_parameters(tmp_path):
    pytest.importorskip("litert_torch")
    from ai_edge_litert.interpreter import Interpreter

    result = api.sparsify(_tiny(), SparsifyConfig(0.8, method="magnitude", scope="layer"), None)  # all 80% zeros
    out = api.save_output(result, tmp_path / "sparse")
    loaded = api.load_model(str(out))
    converted, onnx_file = api.convert(loaded, ["tflite", "onnx"], tmp_path / "bundle", layout="nchw", normalize=False)
    assert converted.ok, converted.check
    assert onnx_file.ok, onnx_file.check
    masked = sum(int((~m).sum()) for m in result.masks.values())
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(tmp_path / "bundle" / onnx_file.file)).graph
    assert sum(int((numpy_helper.to_array(t) == 0).sum()) for t in graph.initializer) >= masked  # zeros exact
    assert converted.zip_mb < converted.size_mb
    path = tmp_path / "bundle" / converted.file
    assert any("stored sparse" in note for note in converted.notes)
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    sparse = [t for t in interpreter.get_tensor_details() if t.get("sparsity_parameters")]
    assert len(sparse) == len(result.masks)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    with torch.no_grad():
        expected = loaded.model(torch.from_numpy(x)).numpy()
    assert np.allclose(got, expected, atol=1e-4)
    dense_weights = sum(m.weight.numel() * 4 for m in sparse_layers(loaded.model).values())
    assert path.stat().st_size < dense_weights  # a dense file holds at least these bytes
    from mobileprune.bench.measure import _sparse_notes

    notes = _sparse_notes({("litert", path.name): [(None, path)]})
    assert platform.machine() not in ("x86_64", "AMD64") or "timed dense here" in notes[0]


def test_obs_error_correction_changes_nothing_where_the_inputs_are_the_dense_ones():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(10, 4, bias=False)).double()
    x = [torch.randn(300, 10, dtype=torch.double)]
    plain, corrected = copy.deepcopy(model), copy.deepcopy(model)
    obs_sparsify(plain, {"0": plain[0]}, x, 0.5)
    obs_sparsify(corrected, {"0": corrected[0]}, x, 0.5, reference=copy.deepcopy(model))
    assert torch.allclose(plain[0].weight, corrected[0].weight, atol=1e-12)


def test_obs_error_correction_repairs_an_earlier_layers_loss():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(12, 12, bias=False), nn.Linear(12, 6, bias=False)).double()
    x = [torch.randn(500, 12, dtype=torch.double) @ torch.randn(12, 12, dtype=torch.double)]
    dense = copy.deepcopy(model)
    errors = {}
    for correct in (False, True):
        sparse = copy.deepcopy(model)
        layers = {"0": sparse[0], "1": sparse[1]}
        obs_sparsify(sparse, layers, x, 0.5, reference=copy.deepcopy(dense) if correct else None)
        with torch.no_grad():
            errors[correct] = float((sparse(x[0]) - dense(x[0])).pow(2).mean())
    assert errors[True] < errors[False]
