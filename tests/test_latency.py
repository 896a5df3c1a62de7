"""`--by latency` on a fake runtime whose latency law is known: tables, cache, correction loop, bad input."""

from __future__ import annotations

import copy
import gc
import importlib
import math

import pytest
import torch
import torch.nn as nn

from mobileprune import ShrinkConfig, load_model, shrink
from mobileprune.prune.cost import COST_MODELS
from mobileprune.prune.cost.latency_table import LatencyTable, layer_shapes
from mobileprune.prune.graph import PruningGraph
from mobileprune.reporting.html_report import render_report

probe_module = importlib.import_module("mobileprune.bench.probe")


class FakeProbe:
    """Latency = 0.05 ms per inference + Σ layers (MACs/1e6)^1.3: superlinear, so the tables' bilinear fit is off
    for whole models and only measurement can say where the target really is."""

    def __init__(self, runtime="fake", threads=1, precision="fp32", pad=1):
        self.runtime, self.threads, self.precision = runtime, threads, precision
        self.pad = pad  # output channels are padded to a multiple of this, as a GEMM's tile does
        self.calls = 0

    def key(self):
        return {"runtime": self.runtime, "runtime_version": "1", "precision": self.precision,
                "threads": str(self.threads), "machine": "test"}  # fmt: skip

    def time(self, models, example, careful=False):
        self.calls += len(models)
        return [0.05 + self._layers(m, example, self.pad) for m in models]

    @staticmethod
    def _layers(model, example, pad=1):
        total = 0.0

        def hook(module, args, out):
            nonlocal total
            padded = out.numel() // out.shape[1] * (math.ceil(out.shape[1] / pad) * pad)
            if isinstance(module, nn.Conv2d):
                macs = padded * module.in_channels // module.groups * math.prod(module.kernel_size)
            else:
                macs = padded * module.in_features
            total += (macs / 1e6) ** 1.3

        hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        with torch.no_grad():
            model.eval()(example)
        for h in hooks:
            h.remove()
        return total


def _tiny():
    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 10, "width_mult": 0.25}, input_size=32)
    return loaded


def _cost(loaded, probe, tmp_path):
    example = torch.randn(1, 3, 32, 32)
    graph = PruningGraph(loaded.model, example, [loaded.model.classifier[-1]])
    offered = {"model": loaded.model, "example": example, "groups": graph.groups, "probe": probe}
    return COST_MODELS.create("latency", offered=offered, cache_dir=str(tmp_path))


def test_tables_are_built_once_and_cached_per_runtime_and_thread_count(tmp_path):
    loaded = _tiny()
    first = _cost(loaded, FakeProbe(), tmp_path)
    assert first.table.measured_now > 10 and first.table.path.exists()
    again_probe = FakeProbe()
    again = _cost(loaded, again_probe, tmp_path)
    assert again.table.measured_now == 0 and again_probe.calls == 3  # whole models only: unpruned twice, half width
    assert again.baseline() == pytest.approx(first.baseline())
    other = _cost(loaded, FakeProbe(threads=2), tmp_path)
    assert other.table.path != first.table.path and other.table.measured_now == first.table.measured_now
    assert _cost(loaded, FakeProbe(runtime="other"), tmp_path).table.path not in (first.table.path, other.table.path)


def test_a_killed_table_resumes_from_what_was_measured(tmp_path):
    loaded = _tiny()
    example = torch.randn(1, 3, 32, 32)
    shapes = list(layer_shapes(loaded.model, example, [n for n, _ in loaded.model.named_modules()]).values())
    table = LatencyTable(FakeProbe(), tmp_path)
    table.ensure(shapes[:5])  # "killed" after five layers
    resumed = LatencyTable(FakeProbe(), tmp_path)
    resumed.ensure(shapes)
    done_before = sum(len(s.points()) for s in {s.key(): s for s in shapes[:5]}.values())
    assert resumed.measured_now == sum(len(s.points()) for s in {s.key(): s for s in shapes}.values()) - done_before


def test_prediction_is_exact_at_the_unpruned_model_and_close_when_pruned(tmp_path):
    loaded = _tiny()
    cost = _cost(loaded, FakeProbe(), tmp_path)
    assert cost.predict({}) == pytest.approx(cost.baseline())
    removed = {g.name: len(g.units) // 16 * 8 for g in cost.groups}  # about half, in multiples of 8 (--round-to)
    timed = cost.measure(removed)
    assert timed.ratio < 0.8
    assert cost.predict(removed) == pytest.approx(timed.ms, rel=0.1)


def test_a_model_pruned_by_another_tool_is_predicted_from_its_layer_widths(tmp_path):
    """Torch-Pruning edits layers in place: the same tables must price its models as they price ours."""
    import torch_pruning as tp

    loaded = _tiny()
    cost = _cost(loaded, FakeProbe(), tmp_path)
    removed = {g.name: len(g.units) // 16 * 8 for g in cost.groups}
    assert cost.predict_model(cost._pruned_copy(removed)) == pytest.approx(cost.predict(removed))
    assert cost.predict_model(loaded.model) == pytest.approx(cost.baseline())
    model = copy.deepcopy(loaded.model)
    other = tp.pruner.MetaPruner(
        model,
        torch.randn(1, 3, 32, 32),
        importance=tp.importance.GroupMagnitudeImportance(p=1),
        pruning_ratio=0.5,
        ignored_layers=[model.classifier[-1]],
        round_to=8,  # widths the tables were timed at or between (below them a fit extrapolates)
    )
    other.step()
    predicted = cost.predict_model(other.model)
    assert predicted < 0.8 * cost.baseline()
    assert predicted == pytest.approx(FakeProbe().time([other.model], torch.randn(1, 3, 32, 32))[0], rel=0.1)


@pytest.mark.parametrize("target", [0.6, 0.7])  # at 0.7 the first attempt is 3% off: inside ±5%, corrected
def test_the_correction_loop_lands_within_five_percent_of_the_measured_target(tmp_path, monkeypatch, target):
    monkeypatch.setattr(probe_module, "RuntimeProbe", FakeProbe)
    monkeypatch.setattr(probe_module, "check_runtime", lambda *a: None)
    loaded = _tiny()
    config = ShrinkConfig(target=target, by="latency", allocation="uniform", cost_options={"cache_dir": str(tmp_path)})
    report = shrink(loaded, config).report
    checks = report.latency["rounds"][0]["checks"]
    assert abs(report.achieved / target - 1) <= 0.05, checks
    # corrected until within half the tolerance (room for the final check's drift), or out of attempts
    assert abs(checks[-1]["measured"] / target - 1) <= 0.025 or len(checks) == 4, checks
    assert all(abs(c["measured"] / target - 1) > 0.025 for c in checks[:-1]), checks
    truth = 0.05 + FakeProbe._layers(loaded.model, torch.randn(1, 3, 32, 32))
    assert report.latency["measured_ms"] == pytest.approx(truth, abs=1e-4)  # the model written is the one timed
    assert all(c["measured"] > 0 for c in checks) and report.by == "latency"
    final = report.latency["final_check"]  # the written model, timed once more before writing
    assert final["within_tolerance"] and final["measured"] == pytest.approx(report.achieved)
    for check in [*checks, final]:  # every timing call's share is kept, and the check is their median
        assert len(check["calls"]) == 3 and sorted(check["calls"])[1] == pytest.approx(check["measured"], abs=1e-4)


def test_with_a_damage_model_both_allocations_are_timed_and_the_less_damaging_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(probe_module, "RuntimeProbe", FakeProbe)
    monkeypatch.setattr(probe_module, "check_runtime", lambda *a: None)
    config = ShrinkConfig(
        target=0.6,
        by="latency",
        allocation="sensitivity",
        calibration_images=4,
        cost_options={"cache_dir": str(tmp_path)},
    )
    entry = shrink(_tiny(), config).report.latency["rounds"][0]
    candidates = entry["candidates"]
    assert set(candidates) == {"ms", "macs"} and all(abs(c["measured"] / 0.6 - 1) <= 0.05 for c in candidates.values())
    kept = min(candidates, key=lambda n: candidates[n]["predicted_damage"])
    assert entry["allocated_per"] == kept
    config.cost_options["allocate_per"] = "macs"
    only = shrink(_tiny(), config).report.latency["rounds"][0]
    assert only["allocated_per"] == "macs" and "candidates" not in only


@pytest.mark.parametrize("pad, expected", [(16, 16), (8, 8), (4, 4), (1, 8)])
def test_round_to_auto_finds_the_multiple_the_runtime_pads_to(tmp_path, pad, expected):
    cost = _cost(_tiny(), FakeProbe(pad=pad), tmp_path)
    multiple, why = cost.preferred_multiple()
    assert multiple == expected, why
    assert ("kept the default 8" in why) == (pad == 1)


def test_round_to_auto_times_each_layers_widths_side_by_side_and_caches_them(tmp_path):
    """Neighbouring widths differ by about as much as a machine drifts between calls: one call per layer."""
    probe = FakeProbe(pad=16)
    cost = _cost(_tiny(), probe, tmp_path)
    calls = []
    timed = probe.time
    probe.time = lambda models, example, careful=False: calls.append((len(models), careful)) or timed(models, example)
    assert cost.preferred_multiple()[0] == 16
    assert calls == [(17, True)]  # the slowest dense layer's 17 widths, interleaved in one careful call
    again = FakeProbe(pad=16)
    cached = _cost(_tiny(), again, tmp_path)
    before = again.calls
    assert cached.preferred_multiple() == cost.preferred_multiple() and again.calls == before


def test_round_to_auto_shrinks_to_the_measured_multiple(tmp_path, monkeypatch):
    monkeypatch.setattr(probe_module, "RuntimeProbe", lambda *args, **kwargs: FakeProbe(pad=16))
    monkeypatch.setattr(probe_module, "check_runtime", lambda *a: None)
    loaded = _tiny()
    config = ShrinkConfig(
        target=0.7, by="latency", allocation="uniform", round_to="auto", cost_options={"cache_dir": str(tmp_path)}
    )
    report = shrink(loaded, config).report
    assert report.latency["round_to"] == 16 and "pads channels to multiples of 16" in report.latency["round_to_auto"]
    changed = [g for g in report.groups if g["after"] != g["before"]]
    assert changed and all(g["after"] % 16 == 0 for g in changed)


def test_round_to_auto_needs_a_latency_target(run_cli, tmp_path):
    res = run_cli("shrink", "mobilenet_v2", "--round-to", "auto", "--out", tmp_path / "o", "--quiet")
    assert res.code == 2 and "--round-to auto measures the runtime: it needs --by latency" in res.err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--by", "latency", "--runtime", "nope"], "unknown --runtime 'nope'"),
        (["--by", "latency", "--precision", "int4"], "--precision int4"),
        (["--by", "latency", "--threads", "0"], "--threads must be at least 1"),
        (["--runtime", "litert"], "--runtime applies to --by latency"),
        (["--speedup", "0.5"], "--speedup must be a number above 1"),
        (["--speedup", "0"], "--speedup must be a number above 1"),
        (["--speedup", "abc"], "--speedup must be a number above 1"),
        (["--by", "latency", "--allocate-per", "watts"], "--allocate-per must be one of auto, ms, macs"),
        (["--speedup", "2", "--target", "0.5"], "give --target or --speedup, not both"),
    ],
)
def test_bad_latency_options_are_one_line_before_any_work(run_cli, tmp_path, args, message):
    res = run_cli("shrink", "mobilenet_v2", "--input-size", "32", "--out", tmp_path / "o", "--quiet", *args)
    lines = [line for line in res.err.strip().splitlines() if line.strip()]
    assert res.code == 2 and len(lines) == 1 and message in lines[0], res.err
    assert not (tmp_path / "o").exists()


def test_a_runtime_that_is_not_installed_is_named(run_cli, tmp_path, monkeypatch):
    from mobileprune.bench.runtimes import RUNTIMES

    runtime = type(RUNTIMES.create("litert"))
    monkeypatch.setattr(runtime, "missing", lambda self: "ai_edge_litert (pip install ai-edge-litert)")
    res = run_cli("shrink", "mobilenet_v2", "--speedup", "2", "--out", tmp_path / "o", "--quiet")
    assert res.code == 2 and "--runtime litert is not installed here: ai_edge_litert" in res.err


def test_the_phone_probe_times_converted_layers_with_benchmark_model_over_adb(tmp_path, monkeypatch):
    from test_bench import RECORDED, _fake_adb

    log = _fake_adb(tmp_path, monkeypatch, "R58M123\\tdevice\\n", RECORDED / "current.txt")
    phone = probe_module.PhoneProbe("adb:R58M123", None, "f0", threads=2)
    assert phone.key()["runtime"] == "benchmark_model" and "R58M123" in phone.key()["machine"]
    layer = nn.Sequential(nn.Conv2d(8, 8, 1), nn.ReLU6())
    assert phone.time([layer, layer], torch.randn(1, 8, 16, 16)) == [11.83, 11.83]  # the recorded phone output
    calls = log.read_text()
    assert calls.count("push") == 1  # the same module is converted and pushed once
    assert "taskset f0 /data/local/tmp/benchmark_model" in calls and "--num_threads=2" in calls
    assert "getprop ro.product.model" in calls
    local = phone._folder
    assert local.is_dir()
    del phone
    gc.collect()  # a probe that is gone leaves nothing behind, here or on the phone
    assert not local.exists() and "shell rm -f /data/local/tmp/mobileprune-probe-1.tflite" in log.read_text()


def test_device_adb_is_only_for_latency_targets(run_cli, tmp_path):
    res = run_cli("shrink", "mobilenet_v2", "--input-size", "32", "--device", "adb", "--out", tmp_path / "o", "--quiet")
    assert res.code == 2 and "--device applies to --by latency" in res.err


def test_rounds_reuse_the_first_rounds_tables_and_time_only_the_last_round(tmp_path, monkeypatch):
    probes: list[FakeProbe] = []

    def make_probe(*args, **kwargs):
        probes.append(FakeProbe(*args, **kwargs))
        return probes[-1]

    monkeypatch.setattr(probe_module, "RuntimeProbe", make_probe)
    monkeypatch.setattr(probe_module, "check_runtime", lambda *a: None)
    loaded = _tiny()
    truth_before = 0.05 + FakeProbe._layers(loaded.model, torch.randn(1, 3, 32, 32))
    config = ShrinkConfig(
        target=0.5, by="latency", allocation="uniform", rounds=3, cost_options={"cache_dir": str(tmp_path)}
    )
    report = shrink(loaded, config).report
    assert len(probes) == 1  # one cost model, timed once: later rounds predict with its tables
    rounds = report.latency["rounds"]
    assert [bool(r["checks"]) for r in rounds] == [False, False, True]
    assert all(0 < r["predicted"] < 1 for r in rounds[:2])
    truth_after = 0.05 + FakeProbe._layers(loaded.model, torch.randn(1, 3, 32, 32))
    assert abs(truth_after / truth_before / 0.5 - 1) <= 0.05  # the true ratio to the unpruned model
    assert report.achieved == pytest.approx(truth_after / truth_before, rel=1e-4)
    # the last round's check is a share of the model it started from; back to the unpruned it is the truth
    kept = min(rounds[-1]["checks"], key=lambda c: abs(c["measured"] - rounds[-1]["round_target"]))
    assert kept["measured"] > 0.55 and kept["measured_ms"] == pytest.approx(truth_after, abs=1e-4)
    page = render_report(report)  # the report shows the untimed rounds as predicted only
    assert page.count("not timed") == 2 and f"<td>{rounds[0]['predicted']:.4g}</td>" in page
    assert f"<td>final check</td><td>0.5</td><td></td><td></td><td>{report.achieved:.4g}</td>" in page
    calls = report.latency["final_check"]["calls"]  # the range of its timing calls
    assert f"<td>{min(calls):.3f}–{max(calls):.3f}</td></tr>" in page


def test_a_check_is_the_median_of_three_timing_calls_so_one_unlucky_call_is_not_kept(tmp_path):
    """The same two models' ratio moves between timing calls (new runtime sessions each call); a check that
    trusted one call would accept an allocation on a lucky draw."""
    loaded = _tiny()
    cost = _cost(loaded, FakeProbe(), tmp_path)

    class Scripted:
        ratios = iter([0.40, 0.52, 0.47])

        def time(self, models, example, careful=False):
            assert careful and len(models) == 2
            return [10.0, 10.0 * next(self.ratios)]

    cost.probe = Scripted()
    timed = cost.compare(loaded.model, loaded.model)
    assert timed.ratio == pytest.approx(0.47) and timed.ms == pytest.approx(4.7)
    assert timed.calls == pytest.approx((0.40, 0.52, 0.47)) and timed.spread() == pytest.approx(0.12 / 0.47)


def test_the_profile_measures_the_latency_models_error_as_shares_so_machine_drift_is_not_counted(tmp_path):
    """A machine that runs 20% slower after the calibration changes every variant's milliseconds by 20%, but
    not its share of the unpruned model timed beside it: the error `profile` reports must not move."""
    from mobileprune.bench.latency_profile import profile_latency

    class Drifting(FakeProbe):
        def time(self, models, example, careful=False):
            slower = 1.2 if careful else 1.0  # variants are timed carefully, the calibration is not
            return [t * slower for t in super().time(models, example, careful)]

    steady = profile_latency(_tiny(), {"cache_dir": str(tmp_path)}, variants=3, probe=FakeProbe()).to_json()
    drifted = profile_latency(_tiny(), {"cache_dir": str(tmp_path)}, variants=3, probe=Drifting()).to_json()
    assert [v["measured_ms"] for v in drifted["variants"]] == pytest.approx(
        [1.2 * v["measured_ms"] for v in steady["variants"]], rel=1e-3
    )
    assert drifted["median_error"] == pytest.approx(steady["median_error"], abs=1e-3)
    assert drifted["worst_error"] < 0.15  # the superlinear fake law, mispredicted by the bilinear tables


def test_the_profiles_variants_lose_channels_in_multiples_of_round_to(tmp_path):
    """`profile --round-to 16` checks the latency model on widths a `--round-to 16` shrink would leave."""
    from mobileprune.bench.latency_profile import profile_latency

    timed = []

    class Recording(FakeProbe):
        def time(self, models, example, careful=False):
            if careful:  # a variant, timed against the unpruned model
                timed.append([m.out_channels for m in models[1].modules() if isinstance(m, nn.Conv2d)])
            return super().time(models, example, careful)

    loaded = _tiny()
    full = [m.out_channels for m in loaded.model.modules() if isinstance(m, nn.Conv2d)]
    options = {"cache_dir": str(tmp_path)}
    profile = profile_latency(loaded, options, variants=2, probe=Recording(), round_to=16).to_json()
    assert profile["round_to"] == 16 and timed
    for widths in timed:
        assert widths != full and all((f - w) % 16 == 0 or w == 1 for f, w in zip(full, widths, strict=True))
