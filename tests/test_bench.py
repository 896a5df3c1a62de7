"""`bench`: statistics, interleaving, the benchmark_model parsers, adb (faked), and a tiny real run."""

import json
import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mobileprune import ShrinkConfig, load_model, save_output, shrink
from mobileprune.bench import BenchConfig, LatencyStats, bench, open_bench_model
from mobileprune.bench.android import parse_benchmark_output
from mobileprune.bench.runtimes import RUNTIMES, Runtime, Session
from mobileprune.errors import UserError
from mobileprune.export import convert

RECORDED = Path(__file__).parent / "data" / "benchmark_model"


def test_statistics_of_synthetic_timings():
    stats = LatencyStats.from_samples(np.arange(1, 101, dtype=float))  # 1 ms ... 100 ms
    assert stats.runs == 100 and stats.min_ms == 1.0
    assert stats.median_ms == 50.5 and stats.mean_ms == 50.5
    assert stats.p90_ms == pytest.approx(90.1) and stats.p99_ms == pytest.approx(99.01)
    assert stats.std_ms == pytest.approx(np.arange(1, 101).std(ddof=1))
    assert stats.fps == pytest.approx(1000 / 50.5)
    one_outlier = LatencyStats.from_samples([10.0] * 99 + [500.0])
    assert one_outlier.fps == 100.0 and one_outlier.mean_ms > 14  # FPS from the median, robust to a stall
    with pytest.raises(ValueError):
        LatencyStats.from_samples([])


class _FakeRuntime(Runtime):
    """Sessions that log their runs: shows the order and count of runs without real models."""

    name = "fake"
    suffix = ".fake"
    module = "json"
    distribution = "pytest"
    calls: list[str] = []

    def open(self, path: Path, threads: int, compute_units: str = "all") -> Session:
        delay = float(path.read_text())
        return Session(lambda: (self.calls.append(path.parent.name), time.sleep(delay)), (1,), "float32")


def test_models_run_interleaved_in_rotating_order_until_runs_and_seconds_are_met(tmp_path, monkeypatch):
    monkeypatch.setitem(RUNTIMES._classes, "fake", _FakeRuntime)
    _FakeRuntime.calls = []
    for name, delay in (("a", 0.002), ("b", 0.001)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "m.fake").write_text(str(delay))
    models = [open_bench_model(tmp_path / "a", "A"), open_bench_model(tmp_path / "b", "B")]
    result = bench(models, BenchConfig(threads=[1], runs=5, min_seconds=0.0, warmup=2))
    timed = _FakeRuntime.calls[1 + 1 + 2 + 2 :]  # after each model's first run and warm-up
    assert timed[:6] == ["a", "b", "b", "a", "a", "b"]  # A B, then B A: neither always goes first
    a, b = result.measurements
    assert (a.stats.runs, b.stats.runs) == (5, 5) and a.stats.median_ms > b.stats.median_ms
    assert result.speedups[0].speedup == pytest.approx(a.stats.median_ms / b.stats.median_ms, rel=1e-3)
    longer = bench(models, BenchConfig(threads=[1], runs=1, min_seconds=0.1, warmup=0))
    assert longer.measurements[0].stats.runs >= 20  # min_seconds keeps it going past `runs`


@pytest.mark.parametrize(
    "name, mean, median, count, init, memory",
    [
        ("current.txt", 11.9235, 11.83, 100, 21.904, 28.8594),
        ("logcat.txt", 2950.34, 2940.1, 1000, 119.515, 61.25),
        ("no_percentiles.txt", 249.684, None, 50, 16.242, 138.809),
        ("old.txt", 79.7609, None, None, 38.467, None),
    ],
)
def test_benchmark_model_output_is_parsed_in_every_form(name, mean, median, count, init, memory):
    t = parse_benchmark_output((RECORDED / name).read_text())
    assert t.mean_ms == pytest.approx(mean) and t.init_ms == pytest.approx(init)
    assert t.count == count and t.memory_mb == (pytest.approx(memory) if memory else None)
    assert t.median_ms == (pytest.approx(median) if median else None)


def test_statistics_come_from_the_timed_run_not_the_warmup():
    t = parse_benchmark_output((RECORDED / "current.txt").read_text())
    assert (t.min_ms, t.max_ms, t.std_ms, t.p5_ms, t.p95_ms) == (11.64, 14.42, 0.402, 11.671, 12.79)
    assert t.first_ms == 15.89 and t.warmup_ms == pytest.approx(12.1882) and t.memory_init_mb == 17.3945


def test_failed_benchmark_output_says_what_the_tool_printed():
    with pytest.raises(UserError, match="no inference timings.*Benchmarking failed"):
        parse_benchmark_output((RECORDED / "failed.txt").read_text())


def _fake_adb(tmp_path: Path, monkeypatch, devices: str, output: str) -> Path:
    """An `adb` on PATH that lists `devices`, accepts pushes and answers `shell` with `output`."""
    bin_dir, log = tmp_path / "bin", tmp_path / "adb.log"
    bin_dir.mkdir()
    script = bin_dir / "adb"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {log}\n'
        'case "$*" in\n'
        f"  *devices*) printf 'List of devices attached\\n{devices}' ;;\n"
        f"  *shell*benchmark_model*) cat {output} ;;\n"
        "esac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_bench_on_a_phone_over_adb(run_cli, tmp_path, monkeypatch):
    log = _fake_adb(tmp_path, monkeypatch, "R58M123\\tdevice\\n", RECORDED / "current.txt")
    model = tmp_path / "model.tflite"
    model.write_bytes(b"TFL3")
    json_out = tmp_path / "phone.json"
    res = run_cli("bench", model, "--device", "adb", "--threads", "1,4", "--cpu-mask", "f0", "--json", json_out)
    assert res.code == 0, res.err
    calls = log.read_text()
    assert "push" in calls and "/data/local/tmp/mobileprune-model.tflite" in calls
    assert "taskset f0 /data/local/tmp/benchmark_model" in calls and "--num_threads=4 --use_xnnpack=true" in calls
    rows = json.loads(json_out.read_text())["measurements"]
    assert [r["threads"] for r in rows] == [1, 4] and rows[0]["median_ms"] == 11.83 and rows[0]["fps"] == 84.53


def test_phone_bench_without_adb_or_device_is_one_clear_line(run_cli, tmp_path, monkeypatch):
    model = tmp_path / "model.tflite"
    model.write_bytes(b"TFL3")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    res = run_cli("bench", model, "--device", "adb")
    assert res.code == 2 and "adb is not on PATH" in res.err
    _fake_adb(tmp_path, monkeypatch, "", RECORDED / "current.txt")
    res = run_cli("bench", model, "--device", "adb:R58M123")
    assert res.code == 2 and "no Android device attached" in res.err


def test_bench_refuses_bad_arguments(run_cli, tmp_path):
    res = run_cli("bench", tmp_path / "missing.tflite")
    assert res.code == 2 and "does not exist" in res.err
    (tmp_path / "notes.txt").write_text("x")
    res = run_cli("bench", tmp_path / "notes.txt")
    assert res.code == 2 and "not a model file" in res.err
    res = run_cli("bench", tmp_path, "--threads", "0")
    assert res.code == 2 and "--threads" in res.err
    res = run_cli("bench", tmp_path, "--runtime", "tensorrt")
    assert res.code == 2 and "unknown runtime 'tensorrt'" in res.err


def test_tiny_original_and_pruned_bench_side_by_side(run_cli, tmp_path):
    original = load_model("mobilenet_v2", arch_kwargs={"num_classes": 10, "width_mult": 0.25})
    original.spec = type(original.spec)(**{**original.spec.to_json(), "input_size": 32})
    pruned = shrink(original, ShrinkConfig(target=0.5, by="macs", allocation="uniform"))
    save_output(pruned, tmp_path / "pruned")
    formats = ["tflite", "onnx", "executorch"]
    convert(load_model(tmp_path / "pruned"), formats, tmp_path / "pruned" / "bundle", check=False)
    original = load_model("mobilenet_v2", arch_kwargs={"num_classes": 10, "width_mult": 0.25})
    original.spec = type(original.spec)(**{**original.spec.to_json(), "input_size": 32})
    save_output(shrink(original, ShrinkConfig(target=1.0)), tmp_path / "original")  # a shrink folder, unpruned
    convert(original, formats, tmp_path / "original" / "bundle", check=False)
    out, png = tmp_path / "bench.json", tmp_path / "fps.png"
    from executorch.extension.pybindings import portable_lib

    pool = str(portable_lib._threadpool_get_thread_count())  # ExecuTorch times only at its process-wide pool size
    args = ("--threads", pool, "--runs", "20", "--min-seconds", "0", "--warmup", "3", "--json", out, "--plot", png)
    args = (*args, "--quiet")
    threads = torch.get_num_threads()
    res = run_cli("bench", tmp_path / "original", tmp_path / "pruned", *args)  # shrink folders with bundles
    assert res.code == 0, res.err
    assert torch.get_num_threads() == threads  # the torch runtime ran at `pool` threads and gave them back
    result = json.loads(out.read_text())
    assert {(m["runtime"], m["file"]) for m in result["measurements"]} == {
        ("torch", "model.pt2"),
        ("litert", "model.tflite"),
        ("onnxruntime", "model.onnx"),
        ("executorch", "model.pte"),
    }
    assert all(m["runs"] >= 20 and m["median_ms"] > 0 and m["p99_ms"] >= m["median_ms"] for m in result["measurements"])
    speedups = result["speedups"]
    assert len(speedups) == 4 and all(0.49 <= s["mac_ratio"] <= 0.51 and s["speedup"] > 0 for s in speedups)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_core_ml_timing_says_it_needs_macos_on_linux(tmp_path, monkeypatch):
    import platform

    monkeypatch.setattr(platform, "system", lambda: "Linux")
    package = tmp_path / "bundle" / "model.mlpackage"
    package.mkdir(parents=True)
    result = bench([open_bench_model(tmp_path / "bundle")], BenchConfig(runs=1, min_seconds=0, warmup=0))
    assert result.measurements == []
    assert result.skipped == ["model.mlpackage on coreml at 1 thread(s): Core ML predicts only on macOS"]
