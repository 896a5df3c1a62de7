"""The output folder: pickle-free reload, plain-PyTorch reload, atomic writes, shrinking again."""

import json

import pytest
import torch

import mobileprune
from mobileprune import ShrinkConfig, load_model, save_output, shrink


@pytest.fixture(scope="module")
def shrunk(tmp_path_factory):
    loaded = load_model("mobilenet_v3_small", arch_kwargs={"num_classes": 10, "width_mult": 0.25})
    loaded.spec = type(loaded.spec)(**{**loaded.spec.to_json(), "input_size": 64})
    result = shrink(loaded, ShrinkConfig(target=0.8, allocation="uniform"))
    out = tmp_path_factory.mktemp("o") / "shrunk"
    save_output(result, out)
    return result, out


def test_load_rebuilds_the_same_model_without_pickles(shrunk):
    result, out = shrunk
    x = torch.randn(2, 3, 64, 64)
    again = mobileprune.load(out)
    torch.testing.assert_close(again(x), result.model(x))
    assert {p.name for p in out.iterdir()} == {"model.pt2", "model.safetensors", "plan.json", "report.json"}


def test_load_works_inside_torch_no_grad(shrunk):
    """Evaluation code loads models under no_grad; replaying the plan traces the graph, which needs autograd."""
    result, out = shrunk
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        again = mobileprune.load(out)
        torch.testing.assert_close(again(x), result.model(x))


def test_model_pt2_loads_with_plain_pytorch(shrunk):
    result, out = shrunk
    x = torch.randn(1, 3, 64, 64)
    module = torch.export.load(out / "model.pt2").module()
    torch.testing.assert_close(module(x), result.model(x))


def test_report_has_what_a_user_needs(shrunk):
    _, out = shrunk
    report = json.loads((out / "report.json").read_text())
    assert report["before"]["params"] > report["after"]["params"]
    assert abs(report["achieved"] - 0.8) <= 0.01
    assert report["spec"]["input_size"] == 64 and report["spec"]["mean"]
    assert {"torch", "torch_pruning", "timm"} <= set(report["versions"])
    assert any(layer["out"][0] != layer["out"][1] for layer in report["layers"])


def test_reports_name_the_commit_they_were_made_with():
    """Run from a checkout, the version carries the commit (results files mix rows from several)."""
    import subprocess
    from pathlib import Path

    from mobileprune.reporting.provenance import revision

    root = Path(mobileprune.__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("an installed copy, not a checkout")
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True)
    assert revision().startswith(f"{mobileprune.__version__}+g{head.stdout.strip()}")


def test_a_shrink_output_can_be_shrunk_again(shrunk, tmp_path):
    _, out = shrunk
    loaded = load_model(out)
    first = sum(p.numel() for p in loaded.model.parameters())
    result = shrink(loaded, ShrinkConfig(target=0.8, allocation="uniform"))
    save_output(result, tmp_path / "twice")
    again = mobileprune.load(tmp_path / "twice")
    assert sum(p.numel() for p in again.parameters()) == result.report["after"]["params"] < first


def test_interrupted_save_leaves_the_previous_output(shrunk, tmp_path, monkeypatch):
    result, out = shrunk
    target = tmp_path / "keep"
    save_output(result, target)
    before = (target / "model.safetensors").read_bytes()

    def explode(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("mobileprune.artifacts.shrink_folder.save_file", explode)
    with pytest.raises(KeyboardInterrupt):
        save_output(result, target, force=True)
    assert (target / "model.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep"]  # no temporary folder left behind


def test_output_permissions_follow_the_umask(shrunk, tmp_path):
    import os
    import stat

    result, _ = shrunk
    old = os.umask(0o022)
    try:
        out = save_output(result, tmp_path / "perms")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    for f in out.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f.name


def test_a_folder_written_by_version_0_1_0_still_loads():
    """Written by mobileprune 0.1.0 (before the restructure); model.pt2 left out of the fixture for size."""
    from pathlib import Path

    folder = Path(__file__).parent / "data" / "shrink_output_v0.1.0"
    expected = json.loads((folder / "expected_logits.json").read_text())
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(mobileprune.load(folder)(x), torch.tensor(expected["logits"]))
    assert mobileprune.load_model(folder).spec.input_size == 32
