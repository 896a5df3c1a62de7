"""`shrink --resolution`: fewer pixels and fewer filters, the target counted against the model's own size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import mobileprune
from mobileprune import load_model
from mobileprune.prune.cost import count_cost

BASE = ["shrink", "mobilenet_v2", "--num-classes", "2", "--input-size", "64", "--by", "macs", "--quiet"]


def _macs(model: torch.nn.Module, size: int) -> int:
    return count_cost(model, torch.randn(1, 3, size, size)).macs


def test_resolution_and_filters_together_hit_the_target_of_the_full_size_model(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = run_cli(*BASE, "--resolution", "48", "--target", "0.4", "--out", "o")
    assert res.code == 0, res.err
    report = json.loads(Path("o/report.json").read_text())
    unpruned = load_model("mobilenet_v2", num_classes=2).model
    full, at48 = _macs(unpruned, 64), _macs(unpruned, 48)
    assert report["spec"]["input_size"] == 48 and report["resolution"]["from_px"] == 64
    assert report["before"]["macs"] == full and abs(report["ratios"]["macs"] - 0.4) <= 0.01
    assert report["achieved"] == report["ratios"]["macs"] and report["target"] == 0.4
    filters = report["resolution"]["filters"]
    assert abs(filters["target"] - 0.4 * full / at48) < 1e-9 and filters["achieved"] < 1  # filters took the rest
    model = mobileprune.load("o")  # rebuilt at 48 px from plan.json: what convert and the app get
    assert abs(_macs(model, 48) / full - 0.4) <= 0.01
    assert model(torch.randn(1, 3, 48, 48)).shape == (1, 2)


def test_resolution_that_alone_cuts_more_than_asked_or_a_latency_target_is_one_line(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = run_cli(*BASE, "--resolution", "32", "--target", "0.6", "--out", "o")
    assert res.code == 2 and "alone keeps" in res.err and "--target" in res.err, res.err
    assert len(res.err.strip().splitlines()) == 1 and not Path("o").exists()
    res = run_cli(*BASE[:-3], "--speedup", "2", "--resolution", "32", "--out", "o", "--quiet")
    assert res.code == 2 and "--by latency" in res.err and not Path("o").exists()
    res = run_cli(*BASE, "--resolution", "4", "--target", "0.5", "--out", "o")
    assert res.code == 2 and "--resolution must be between" in res.err


def test_resolution_auto_picks_the_smallest_multiple_of_32_that_keeps_the_target(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = [*BASE[:5], "96", *BASE[6:]]
    unpruned = load_model("mobilenet_v2", num_classes=2).model
    full = _macs(unpruned, 96)
    assert _macs(unpruned, 32) / full < 0.4 <= _macs(unpruned, 64) / full  # so the rule's answer is 64
    res = run_cli(*base, "--resolution", "auto", "--target", "0.4", "--out", "o")
    assert res.code == 0, res.err
    report = json.loads(Path("o/report.json").read_text())
    assert report["spec"]["input_size"] == 64 and report["resolution"]["from_px"] == 96
    assert abs(report["ratios"]["macs"] - 0.4) <= 0.01 and report["before"]["macs"] == full


def test_resolution_auto_keeps_the_size_when_no_smaller_one_fits_or_the_target_is_params(
    run_cli, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    for out, by, target in (("macs", "macs", "0.9"), ("params", "params", "0.5")):
        args = [*BASE[:-3], "--by", by, "--resolution", "auto", "--target", target, "--out", out]
        res = run_cli(*args)
        assert res.code == 0, res.err
        assert "--resolution auto" in res.out and "64" in res.out, res.out
        report = json.loads(Path(out, "report.json").read_text())
        assert report["spec"]["input_size"] == 64 and "resolution" not in report
        assert abs(report["ratios"][by] - float(target)) <= 0.01


def test_bad_resolution_values_are_one_line(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = run_cli(*BASE, "--resolution", "big", "--target", "0.5", "--out", "o")
    assert res.code == 2 and "--resolution must be a whole number" in res.err and not Path("o").exists()
    res = run_cli(*BASE[:-3], "--speedup", "2", "--resolution", "auto", "--out", "o", "--quiet")
    assert res.code == 2 and "--resolution auto counts MACs" in res.err and not Path("o").exists()
    assert len(res.err.strip().splitlines()) == 1


def test_resuming_at_another_resolution_names_the_input_size():
    from mobileprune.errors import UserError
    from mobileprune.prune.checkpoint import RunCheckpoint

    saved = {"input_size": 48, "config": {"target": 0.711}}  # --resolution 48: the filters' target follows it
    with pytest.raises(UserError, match="input-size = 48, this run has 64"):
        RunCheckpoint(saved={"settings": saved}).begin({"input_size": 64, "config": {"target": 0.4}})
    old = {"config": {"target": 0.4}}  # written before the input size was recorded: taken as this run's
    RunCheckpoint(saved={"settings": old}).begin({"input_size": 64, "config": {"target": 0.4}}, {"input_size": 64})


def test_a_macs_cut_without_resolution_names_the_smaller_size_that_would_fit(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = ["shrink", "mobilenet_v2", "--num-classes", "2", "--input-size", "96", "--by", "macs"]
    res = run_cli(*base, "--target", "0.4", "--out", "a")
    assert res.code == 0, res.err
    assert "at 64 px this network keeps 0.4 of the MACs" in " ".join(res.out.split()), res.out
    assert json.loads(Path("a/report.json").read_text())["spec"]["input_size"] == 96  # only a note
    res = run_cli(*base, "--target", "0.9", "--out", "b")
    assert res.code == 0 and "--resolution auto" not in res.out, res.out
