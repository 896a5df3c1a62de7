"""Inputs that used to pass unchecked, and damaged output folders: one line each, exit 2, nothing written."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torchvision

TINY = ["--num-classes", "10", "--allocation", "uniform", "--quiet"]
LEGACY = Path(__file__).parent / "data" / "shrink_output_v0.1.0"


def _one_line(res, code=2):
    lines = [line for line in res.err.strip().splitlines() if line.strip()]
    assert res.code == code, (res.code, res.err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "internal error" not in res.err, res.err
    return lines[0]


@pytest.mark.parametrize("size", ["0", "-5", "100000", "4"])
def test_input_sizes_a_network_cannot_take(run_cli, tmp_path, size):
    res = run_cli("shrink", "mobilenet_v2", "--input-size", size, "--out", tmp_path / "o", *TINY)
    line = _one_line(res)
    assert "--input-size" in line and not (tmp_path / "o").exists()


def test_the_smallest_size_a_network_runs_at_is_suggested(run_cli, tmp_path):
    res = run_cli("shrink", "torchvision:resnet18", "--input-size", "8", "--out", tmp_path / "o", *TINY)
    assert res.code == 0 or "it runs at" in _one_line(res)


@pytest.mark.parametrize("model", ["zoo", "checkpoint"])
def test_zero_classes(run_cli, tmp_path, model):
    source = "mobilenet_v2"
    if model == "checkpoint":
        source = tmp_path / "w.pth"
        torch.save(torchvision.models.mobilenet_v2(num_classes=10).state_dict(), source)
    res = run_cli("shrink", source, "--arch", "mobilenet_v2", "--num-classes", "0", "--out", tmp_path / "o", "--quiet")
    assert "--num-classes must be at least 1" in _one_line(res)


def test_files_that_are_not_checkpoints_say_what_they_are(run_cli, tmp_path):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x08\x12\x07pytorch\x1a\x032.0" + bytes(100))
    noise = tmp_path / "noise.pt"
    noise.write_bytes(bytes(range(256)) * 8)
    model = torchvision.models.mobilenet_v2(width_mult=0.25, num_classes=10).eval()
    pt2 = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(1, 3, 32, 32),)), pt2)
    for path, expected in ((onnx, "is an ONNX model"), (noise, "not a PyTorch checkpoint"), (pt2, "torch.export")):
        line = _one_line(run_cli("shrink", path, "--arch", "mobilenet_v2", "--out", tmp_path / "o", "--quiet"))
        assert expected in line and "--trust-pickle" not in line, line


def test_a_safetensors_state_dict_loads(run_cli, tmp_path):
    from safetensors.torch import save_file

    state = torchvision.models.mobilenet_v2(num_classes=10).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    res = run_cli(
        "shrink",
        tmp_path / "w.safetensors",
        "--arch",
        "mobilenet_v2",
        "--input-size",
        "32",
        "--out",
        tmp_path / "o",
        *TINY,
    )
    assert res.code == 0, res.err


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_weights_are_refused_naming_the_tensor(run_cli, tmp_path, bad):
    state = torchvision.models.mobilenet_v2(num_classes=10).state_dict()
    state["features.3.conv.1.0.weight"][0, 0, 0, 0] = bad
    torch.save(state, tmp_path / "w.pth")
    line = _one_line(run_cli("shrink", tmp_path / "w.pth", "--arch", "mobilenet_v2", "--out", tmp_path / "o", *TINY))
    assert "non-finite weights: 'features.3.conv.1.0.weight' holds 1 NaN/Inf" in line


def _damaged(tmp_path, edit) -> Path:
    folder = tmp_path / "damaged"
    shutil.copytree(LEGACY, folder)
    edit(folder)
    return folder


def _edit_plan(change):
    def edit(folder):
        plan = json.loads((folder / "plan.json").read_text())
        change(plan)
        (folder / "plan.json").write_text(json.dumps(plan))

    return edit


DAMAGE = {
    "truncated weights": (
        lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:5000]),
        "model.safetensors' is damaged",
    ),
    "unknown group": (
        _edit_plan(lambda p: p["steps"][0].update(group="features.99.conv")),
        "names group 'features.99.conv', which this architecture does not have",
    ),
    "channel out of range": (_edit_plan(lambda p: p["steps"][0].update(removed=[100000])), "removes channel 100000 of"),
    "non-numeric input size": (
        _edit_plan(lambda p: p["spec"].update(input_size="big")),
        "spec.input_size must be a positive whole number",
    ),
    "newer format": (_edit_plan(lambda p: p.update(format=99)), "plan format 99"),
    "invalid report": (lambda f: (f / "report.json").write_text("{not json"), "report.json' is damaged"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_output_folder_names_the_file(run_cli, tmp_path, damage):
    edit, expected = DAMAGE[damage]
    folder = _damaged(tmp_path, edit)
    commands = [("info", folder), ("shrink", folder, "--out", tmp_path / "o", "--quiet")]
    commands.append(("convert", folder, "--to", "onnx", "--out", tmp_path / "b", "--quiet"))
    for args in commands:
        if damage == "invalid report" and args[0] != "info":
            continue  # shrink and convert rebuild from plan.json and the weights; the report is only read by info
        assert expected in _one_line(run_cli(*args)), args
    assert not (tmp_path / "o").exists() and not (tmp_path / "b").exists()


def test_eval_data_with_a_class_subset_matches_by_name_and_refuses_unknown_names(run_cli, tmp_path):
    from conftest import write_images

    from mobileprune.models import resolve_spec
    from mobileprune.models.labels import class_ids

    ids = class_ids(resolve_spec("mobilenet_v2"))
    write_images(tmp_path / "eval", {ids[3]: (200, 0, 0), ids[500]: (0, 0, 200)}, 2)
    common = ["mobilenet_v2", "--input-size", "32", "--allocation", "uniform", "--quiet"]
    res = run_cli("shrink", *common, "--eval-data", tmp_path / "eval", "--out", tmp_path / "o", "--target", "0.9")
    assert res.code == 0, res.err
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["accuracy"]["before"]["images"] == 4  # two classes of the model's 1000, found by wnid
    from mobileprune.models.labels import class_names

    names = class_names(resolve_spec("mobilenet_v2"))
    worst = report["accuracy"]["worst_classes"]  # per class, named, flagged: 2 images cannot be judged
    assert {c["name"] for c in worst} == {names[3], names[500]} and all(c["too_few_images"] for c in worst)
    assert all(c["images"] == 2 for c in worst)
    write_images(tmp_path / "eval", {"n99999999": (0, 200, 0)}, 1)
    res = run_cli("shrink", *common, "--eval-data", tmp_path / "eval", "--out", tmp_path / "p", "--target", "0.9")
    assert "n99999999' is not one of the model's 1000 classes" in _one_line(res) and not (tmp_path / "p").exists()
