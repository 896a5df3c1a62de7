"""The CLI: the happy path, and every bad input as one line with exit code 2 and nothing written."""

import json
import os

import pytest
import torch

TINY = ["--input-size", "32", "--num-classes", "10", "--allocation", "uniform", "--quiet"]


@pytest.fixture
def mnv2_weights(tmp_path):
    import torchvision

    path = tmp_path / "mnv2.pth"
    torch.save(torchvision.models.mobilenet_v2(num_classes=10).state_dict(), path)
    return path


def test_shrink_then_info(run_cli, mnv2_weights, tmp_path):
    out = tmp_path / "out"
    res = run_cli("shrink", mnv2_weights, "--arch", "mobilenet_v2", "--target", "0.84", "--out", out, *TINY)
    assert res.code == 0, res.err
    report = json.loads((out / "report.json").read_text())
    assert abs(report["achieved"] - 0.84) <= 0.01
    res = run_cli("info", out)
    assert res.code == 0 and "parameters" in res.out and "achieved" in res.out
    res = run_cli("info", out, "--json")
    assert json.loads(res.out)["achieved"] == report["achieved"]


def test_wrapped_state_dict_is_unwrapped(run_cli, tmp_path):
    import torchvision

    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": torchvision.models.mobilenet_v2(num_classes=10).state_dict(), "epoch": 3}, path)
    res = run_cli("shrink", path, "--arch", "mobilenet_v2", "--out", tmp_path / "o", *TINY)
    assert res.code == 0, res.err


def _bad(run_cli, tmp_path, *args):
    out = tmp_path / "never"
    res = run_cli("shrink", *args, "--out", out, "--quiet")
    assert res.code == 2, (res.code, res.err)
    lines = [line for line in res.err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.err
    assert "Traceback" not in res.err
    assert not out.exists()  # nothing half-written
    return res.err


def test_missing_file(run_cli, tmp_path):
    assert "no such file or model name: 'nope.pt'" in _bad(run_cli, tmp_path, "nope.pt", "--arch", "mobilenet_v2")


def test_text_file_named_pt(run_cli, tmp_path):
    p = tmp_path / "notes.pt"
    p.write_text("hello, I am not a checkpoint\n")
    assert "is not a PyTorch checkpoint" in _bad(run_cli, tmp_path, p, "--arch", "mobilenet_v2")


def test_truncated_checkpoint(run_cli, tmp_path, mnv2_weights):
    p = tmp_path / "cut.pth"
    p.write_bytes(mnv2_weights.read_bytes()[:50_000])
    assert "truncated or corrupt" in _bad(run_cli, tmp_path, p, "--arch", "mobilenet_v2")


def test_unknown_arch(run_cli, tmp_path, mnv2_weights):
    assert "unknown architecture 'mobilenet_v9'" in _bad(run_cli, tmp_path, mnv2_weights, "--arch", "mobilenet_v9")


def test_state_dict_not_matching_arch(run_cli, tmp_path, mnv2_weights):
    err = _bad(run_cli, tmp_path, mnv2_weights, "--arch", "mobilenet_v3_small", "--num-classes", "10")
    assert "does not match --arch mobilenet_v3_small: first missing key" in err
    assert "first unexpected key" in err


@pytest.mark.parametrize("target", ["0", "1.5", "-0.2", "nan", "abc"])
def test_bad_targets(run_cli, tmp_path, target):
    err = _bad(run_cli, tmp_path, "mobilenet_v2", "--target", target)
    assert "--target must be a number in (0, 1]" in err


def test_pickled_module_needs_trust(run_cli, tmp_path):
    import torchvision

    p = tmp_path / "whole.pt"
    torch.save(torchvision.models.mobilenet_v2(num_classes=10), p)
    assert "pass --trust-pickle" in _bad(run_cli, tmp_path, p)
    res = run_cli("shrink", p, "--trust-pickle", "--out", tmp_path / "ok", *TINY)
    assert res.code == 0, res.err


def test_torchscript_is_refused_with_a_way_out(run_cli, tmp_path):
    import torchvision

    p = tmp_path / "scripted.pt"
    torch.jit.script(torchvision.models.mobilenet_v2(num_classes=10)).save(str(p))
    assert "TorchScript archive" in _bad(run_cli, tmp_path, p, "--arch", "mobilenet_v2")


def test_missing_data_folder(run_cli, tmp_path):
    assert "data folder" in _bad(run_cli, tmp_path, "mobilenet_v2", "--data", tmp_path / "nodata", *TINY[:-1])


def test_empty_data_folder(run_cli, tmp_path):
    (tmp_path / "empty").mkdir()
    assert "no images found" in _bad(run_cli, tmp_path, "mobilenet_v2", "--data", tmp_path / "empty", *TINY[:-1])


def test_unreadable_data_folder(run_cli, tmp_path, monkeypatch):
    (tmp_path / "locked").mkdir()
    real_access = os.access  # root ignores permission bits, so make this folder unreadable by decree
    monkeypatch.setattr(os, "access", lambda p, m: False if str(p).endswith("locked") else real_access(p, m))
    assert "is not readable" in _bad(run_cli, tmp_path, "mobilenet_v2", "--data", tmp_path / "locked", *TINY[:-1])


def test_sss_without_sparsity_training_is_refused_before_any_work(run_cli, tmp_path):
    err = _bad(run_cli, tmp_path, "mobilenet_v2", "--criterion", "sss", *TINY[:-1])
    assert "sss criterion ranks by scales learned in training" in err and "--sparsity-train" in err


def test_output_folder_not_writable(run_cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = run_cli("shrink", "mobilenet_v2", "--out", blocker / "sub", "--quiet")
    assert res.code == 2 and "is not writable" in res.err


def test_existing_output_needs_force(run_cli, tmp_path):
    out = tmp_path / "full"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    res = run_cli("shrink", "mobilenet_v2", "--out", out, "--quiet")
    assert res.code == 2 and "--force" in res.err
    assert (out / "keep.txt").read_text() == "precious"


def test_model_the_graph_walker_cannot_handle(run_cli, tmp_path):
    from untraceable_models import inline_shufflenet

    p = tmp_path / "inline.pt"
    torch.save(inline_shufflenet(), p)
    err = _bad(run_cli, tmp_path, p, "--trust-pickle", "--input-size", "32")
    assert "cannot follow this model at op _Reshape_" in err


def test_pretrained_without_internet_is_one_line(run_cli, tmp_path, monkeypatch):
    def offline(*a, **k):
        raise OSError("urlopen error [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torchvision.models.get_model", offline)
    assert "could not download pretrained weights" in _bad(run_cli, tmp_path, "mobilenet_v2", "--pretrained")


def test_unknown_distillation_loss_is_refused_before_any_work(run_cli, tmp_path):
    err = _bad(run_cli, tmp_path, "mobilenet_v2", "--distill-loss", "mse", *TINY)
    assert "--distill-loss must be 'centered' or 'kl', not 'mse'" in err


def test_a_state_dict_without_arch_has_its_architecture_inferred(run_cli, mnv2_weights, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = run_cli("shrink", mnv2_weights, "--input-size", "32", "--allocation", "uniform")
    assert res.code == 0, res.err
    assert "architecture inferred from the checkpoint's keys and shapes: mobilenet_v2 (10 classes)" in res.out
    report = json.loads((tmp_path / "mnv2.shrunk" / "report.json").read_text())  # named after the input
    assert report["spec"]["arch"] == "mobilenet_v2" and report["spec"]["num_classes"] == 10


def test_an_ambiguous_or_unknown_state_dict_asks_for_arch(run_cli, tmp_path):
    import timm

    ambiguous = tmp_path / "lite.pth"
    torch.save(timm.create_model("efficientnet_lite0", num_classes=7).state_dict(), ambiguous)
    assert "timm:efficientnet_lite0, timm:tf_efficientnet_lite0" in _bad(run_cli, tmp_path, ambiguous)
    unknown = tmp_path / "odd.pth"
    torch.save({"w": torch.zeros(3)}, unknown)
    assert "no architecture mobileprune knows" in _bad(run_cli, tmp_path, unknown)


def test_few_unlabeled_photos_get_a_note_and_enough_do_not(run_cli, mnv2_weights, tmp_path, monkeypatch):
    from conftest import write_images

    write_images(tmp_path / "few", {"train": (128, 128, 128)}, 12)  # few/train/*.jpg: flat, unlabeled
    args = ["--arch", "mobilenet_v2", "--target", "0.9", "--data", tmp_path / "few", "--distill", "--epochs", "0"]
    loud = [option for option in TINY if option != "--quiet"]  # the note is a log line; --quiet silences it
    res = run_cli("shrink", mnv2_weights, *args, "--out", tmp_path / "o1", *loud)
    assert res.code == 0, res.err
    assert "11 unlabeled training photos" in res.out and "How many photos?" in res.out  # 12 less 1 held out
    sweep = ["--arch", "mobilenet_v2", "--targets", "0.9", "--criteria", "l1", "--data", tmp_path / "few", "--distill"]
    res = run_cli("sweep", mnv2_weights, *sweep, "--epochs", "0", "--out", tmp_path / "s1", *loud)
    assert res.code == 0, res.err
    assert "11 unlabeled training photos" in res.out  # a sweep is shrinks: the same note
    monkeypatch.setattr("mobileprune.cli.shrink.FEW_PHOTOS", 10)
    res = run_cli("shrink", mnv2_weights, *args, "--out", tmp_path / "o2", *loud)
    assert res.code == 0, res.err
    assert "unlabeled training photos" not in res.out
