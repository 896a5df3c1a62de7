"""A crafted `.pt2` (inside a shrink folder or on its own) must never run code without --trust-pickle.

Each test plants a pickle whose unpickling creates a marker file in one place `torch.export.load` would
unpickle it, then goes through every entry point that reads a `.pt2`: `load_model(FOLDER)`, `shrink
FOLDER` and `bench FOLDER`. The marker must not appear.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
import torchvision

from mobileprune import ShrinkConfig, UserError, load_model, save_output, shrink
from mobileprune.artifacts.safe_pt2 import check_pt2


class Payload:
    """Unpickling this creates `marker` (a harmless stand-in for os.system)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def pickled_module_output(tmp_path_factory) -> Path:
    """A real shrink output of a model that came as a pickled module: its model.pt2 is the model."""
    root = tmp_path_factory.mktemp("pt2")
    source = root / "whole.pt"
    torch.save(torchvision.models.mobilenet_v2(width_mult=0.25, num_classes=10), source)
    loaded = load_model(source, trust_pickle=True)
    loaded.spec = type(loaded.spec)(**{**loaded.spec.to_json(), "input_size": 32})
    out = root / "shrunk"
    save_output(shrink(loaded, ShrinkConfig(target=0.8, allocation="uniform")), out)
    assert json.loads((out / "plan.json").read_text())["spec"]["library"] == "pickle"
    return out


def _rewrite(pt2: Path, edit) -> None:
    """Rewrite the zip with `edit(entries)` applied to {name: bytes}."""
    with zipfile.ZipFile(pt2) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    edit(entries)
    with zipfile.ZipFile(pt2, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)


def _prefix(entries: dict) -> str:
    return next(iter(entries)).split("/", 1)[0] + "/"


def plant_sample_inputs(entries: dict, payload: bytes) -> None:
    entries[_prefix(entries) + "data/sample_inputs/model.pt"] = payload


def plant_pickled_weight(entries: dict, payload: bytes) -> None:
    config_name = _prefix(entries) + "data/weights/model_weights_config.json"
    config = json.loads(entries[config_name])
    first = next(iter(config["config"]))
    config["config"][first]["use_pickle"] = True
    entries[config_name] = json.dumps(config).encode()
    entries[_prefix(entries) + "data/weights/" + config["config"][first]["path_name"]] = payload


def plant_opaque_constant(entries: dict, payload: bytes) -> None:
    config_name = _prefix(entries) + "data/constants/model_constants_config.json"
    config = {"config": {"evil": {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True}}}
    entries[config_name] = json.dumps(config).encode()
    entries[_prefix(entries) + "data/constants/opaque_obj_0"] = payload


def plant_legacy_weights(entries: dict, payload: bytes) -> None:
    entries[_prefix(entries) + "data/weights/model.pt"] = payload


def plant_aoti_library(entries: dict, payload: bytes) -> None:
    entries[_prefix(entries) + "data/aotinductor/model/model.so"] = payload


PLANTS = [plant_sample_inputs, plant_pickled_weight, plant_opaque_constant, plant_legacy_weights, plant_aoti_library]


@pytest.fixture(params=PLANTS, ids=lambda f: f.__name__)
def crafted(request, pickled_module_output, tmp_path) -> tuple[Path, Path]:
    """A copy of the shrink folder with a payload planted in its model.pt2; returns (folder, marker)."""
    folder = tmp_path / "crafted"
    folder.mkdir()
    for f in pickled_module_output.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    marker = tmp_path / "PWNED"
    payload = pickle.dumps(Payload(marker), protocol=2)
    _rewrite(folder / "model.pt2", lambda entries: request.param(entries, payload))
    return folder, marker


def test_the_planted_sample_inputs_would_run_with_plain_torch_export_load(pickled_module_output, tmp_path):
    """The threat is real: torch.export.load itself runs the payload (so the tests below can fail)."""
    pt2 = tmp_path / "model.pt2"
    pt2.write_bytes((pickled_module_output / "model.pt2").read_bytes())
    marker = tmp_path / "PWNED"
    _rewrite(pt2, lambda e: plant_sample_inputs(e, pickle.dumps(Payload(marker), protocol=2)))
    with contextlib.suppress(Exception):  # the payload returns no tuple: torch fails *after* running it
        torch.export.load(str(pt2))
    assert marker.exists()


def test_an_honest_pt2_passes_the_check(pickled_module_output):
    check_pt2(pickled_module_output / "model.pt2")
    loaded = load_model(pickled_module_output)
    assert loaded.model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_load_model_refuses_a_crafted_folder(crafted):
    folder, marker = crafted
    with pytest.raises(UserError, match="cannot be opened safely.*--trust-pickle"):
        load_model(folder)
    assert not marker.exists()


def test_shrink_refuses_a_crafted_folder(crafted, run_cli, tmp_path):
    folder, marker = crafted
    res = run_cli("shrink", folder, "--out", tmp_path / "o", "--quiet")
    assert res.code == 2 and "cannot be opened safely" in res.err, res.err
    assert len(res.err.strip().splitlines()) == 1
    assert not marker.exists()


def test_bench_does_not_open_a_crafted_pt2(crafted, run_cli):
    folder, marker = crafted
    res = run_cli("bench", folder, "--runtime", "torch", "--runs", "1", "--min-seconds", "0", "--warmup", "0")
    assert "not timed" in res.out and "cannot be opened safely" in res.out, res.out + res.err
    assert not marker.exists()


def test_a_truncated_pt2_is_one_clear_error(pickled_module_output, tmp_path):
    pt2 = tmp_path / "model.pt2"
    pt2.write_bytes((pickled_module_output / "model.pt2").read_bytes()[:5000])
    with pytest.raises(UserError, match="not a complete zip archive"):
        check_pt2(pt2)


def test_a_pickled_module_folder_converts_and_benches_but_is_not_pruned_again(pickled_module_output, run_cli, tmp_path):
    res = run_cli("convert", pickled_module_output, "--to", "onnx", "--out", tmp_path / "b", "--quiet")
    assert res.code == 0, res.err + res.out
    res = run_cli("bench", pickled_module_output, "--runs", "2", "--min-seconds", "0", "--warmup", "0", "--quiet")
    assert res.code == 0, res.err
    res = run_cli("shrink", pickled_module_output, "--target", "0.8", "--out", tmp_path / "again", "--quiet")
    assert res.code == 2 and "holds only its exported graph" in res.err and "internal error" not in res.err
