"""`shrink --resolution`: fewer pixels and fewer filters, the target counted against the model's own size."""

from __future__ import annotations

import json
from pathlib import Path

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
