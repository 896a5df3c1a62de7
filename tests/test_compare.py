"""`compare`: per-class damage, pruning-identified exemplars (PIE), and the refusals of mismatched inputs."""

import csv
import json

import numpy as np
import pytest
from conftest import lively, write_images

from mobileprune import ShrinkConfig, load_model, save_output, shrink
from mobileprune.compare import modal_prediction, per_class, pruning_identified_exemplars


def test_per_class_top1_and_top5_on_known_predictions():
    labels = np.array([0, 0, 0, 1, 1, 2])
    before = np.array([[0, 1], [0, 1], [0, 2], [1, 0], [1, 0], [2, 0]])  # every image right
    after = np.array([[0, 1], [1, 0], [1, 2], [1, 0], [1, 0], [0, 1]])  # class 0 loses 2 of 3, class 2 its one
    rows = per_class(labels, before, [after], names=["cat", "dog", "emu"])
    assert [r.name for r in rows] == ["emu", "cat", "dog"]  # most damaged first
    emu, cat, dog = rows
    assert (emu.images, emu.top1_before, emu.top1_after, emu.top5_after) == (1, 1.0, 0.0, 0.0)
    assert cat.images == 3 and cat.top1_after == pytest.approx(1 / 3) and cat.top5_after == pytest.approx(2 / 3)
    assert dog.change == 0.0 and all(r.too_few for r in rows)  # fewer than 5 images: flagged as noise
    two = per_class(labels, before, [after, before])  # two pruned models: their mean, named by index
    assert two[0].name == "2" and two[0].top1_after == 0.5


def test_pie_is_where_the_modal_pruned_prediction_differs():
    before = np.array([0, 1, 2, 3, 4])
    pruned = [np.array([0, 2, 2, 0, 5]), np.array([1, 2, 2, 3, 4]), np.array([0, 1, 2, 3, 6])]
    # image 0: 0,1,0 → 0 (agrees); 1: 2,2,1 → 2 (PIE); 2: agrees; 3: 0,3,3 → 3; 4: 5,4,6 tie → 4 (smallest)
    assert modal_prediction(pruned).tolist() == [0, 2, 2, 3, 4]
    assert pruning_identified_exemplars(before, pruned).tolist() == [1]
    assert pruning_identified_exemplars(before, [pruned[0]]).tolist() == [1, 3, 4]  # one model: its own


@pytest.fixture
def colours(tmp_path):
    """Four colour classes, 6 images each, as labelled evaluation images."""
    root = tmp_path / "eval"
    palette = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "grey": (128, 128, 128)}
    write_images(root, palette, 6)
    return root


def _tiny(tmp_path, name="orig", arch="mobilenet_v2", size=32):
    kwargs = {"num_classes": 4, **({"width_mult": 0.25} if arch != "mobilenet_v1" else {})}
    loaded = load_model(arch, arch_kwargs=kwargs)
    loaded.spec = type(loaded.spec)(**{**loaded.spec.to_json(), "input_size": size})
    lively(loaded.model, size)
    folder = tmp_path / name
    save_output(shrink(loaded, ShrinkConfig(target=1.0, allocation="uniform")), folder)
    return folder


def _pruned(tmp_path, original, name, target):
    save_output(shrink(load_model(original), ShrinkConfig(target=target, allocation="uniform")), tmp_path / name)
    return tmp_path / name


def test_compare_writes_classes_pie_and_thumbnails_with_class_names(run_cli, tmp_path, colours):
    original = _tiny(tmp_path)
    a, b = _pruned(tmp_path, original, "a", 0.5), _pruned(tmp_path, original, "b", 0.3)
    names = tmp_path / "names.txt"
    names.write_text("Blue jay\nGrey wolf\nGreen frog\nRed fox\n")  # sorted folders: blue, green, grey, red
    res = run_cli("compare", original, a, b, "--eval-data", colours, "--labels", names, "--out", tmp_path / "c")
    assert res.code == 0, res.err
    report = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert report["images"] == 24 and [m["label"] for m in report["models"]] == [str(original), str(a), str(b)]
    assert report["models"][0]["agreement_with_first"] == 1.0
    assert {c["name"] for c in report["classes"]} == {"Blue jay", "Grey wolf", "Green frog", "Red fox"}
    assert all(c["images"] == 6 and not c["too_few_images"] for c in report["classes"])
    changes = [c["top1_change"] for c in report["classes"]]
    assert changes == sorted(changes)
    with open(tmp_path / "c" / "pie.csv") as f:
        pie = list(csv.DictReader(f))
    assert len(pie) == report["pie_count"] > 0  # a 0.3-width random net disagrees somewhere
    assert pie[0]["label"] in {"Blue jay", "Grey wolf", "Green frog", "Red fox"}
    assert [float(r["score"]) for r in pie] == sorted((float(r["score"]) for r in pie), reverse=True)
    assert (tmp_path / "c" / "pie.png").stat().st_size > 10_000 and (tmp_path / "c" / "classes.png").exists()
    assert "most damaged classes" in res.out and "pruning-identified exemplars" in res.out


def test_compare_runs_the_exported_files_the_app_ships(tmp_path, colours):
    pytest.importorskip("ai_edge_litert")
    from mobileprune import api
    from mobileprune.export import convert

    original = _tiny(tmp_path)
    pruned = _pruned(tmp_path, original, "a", 0.5)
    convert(load_model(pruned), ["tflite", "onnx"], tmp_path / "bundle", check=False)
    files = [str(tmp_path / "bundle" / name) for name in ("model.tflite", "model.onnx")]
    result = api.compare([str(original), str(pruned), *files], colours)
    torch_row, tflite_row, onnx_row = result.models[1:]
    assert tflite_row["kind"] == "tflite" and tflite_row["top1"] == torch_row["top1"]  # NHWC 0-1 input, fed right
    assert onnx_row["kind"] == "onnx" and onnx_row["top1"] == torch_row["top1"]  # NCHW normalised, as PyTorch
    assert tflite_row["agreement_with_first"] == onnx_row["agreement_with_first"] == torch_row["agreement_with_first"]


def test_compare_refuses_mismatched_models_and_unknown_classes(run_cli, tmp_path, colours):
    original = _tiny(tmp_path)
    other_arch = _tiny(tmp_path, "v1", arch="mobilenet_v1")
    res = run_cli("compare", original, other_arch, "--eval-data", colours, "--out", tmp_path / "c")
    assert res.code == 2 and "has architecture mobilenet_v1" in res.err and len(res.err.strip().splitlines()) == 1
    bigger = _tiny(tmp_path, "big", size=40)
    res = run_cli("compare", original, bigger, "--eval-data", colours, "--out", tmp_path / "c")
    assert res.code == 2 and "has input size 40" in res.err
    write_images(colours, {"pink": (250, 150, 200)}, 2)  # a fifth class: the model predicts four
    res = run_cli("compare", original, original, "--eval-data", colours, "--out", tmp_path / "c")
    assert res.code == 2 and "5 classes" in res.err and "predicts 4" in res.err
    res = run_cli("compare", original, "--eval-data", colours, "--out", tmp_path / "c")
    assert res.code == 2 and "at least one pruned model" in res.err
    assert not (tmp_path / "c").exists()
