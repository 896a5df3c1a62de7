"""`sweep`: every (criterion, target) point, resumable after a kill; Pareto front; plot-filters."""

import json

import pytest
import torch

from mobileprune import ShrinkConfig, load_model, shrink
from mobileprune.sweep import SweepPoint, pareto_front, run_sweep
from mobileprune.train.data import open_data


def _tiny():
    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 2, "width_mult": 0.25})
    loaded.spec = type(loaded.spec)(**{**loaded.spec.to_json(), "input_size": 32})
    return loaded


def test_sweep_resumes_after_being_killed_and_never_recomputes_a_point(tmp_path, image_folder):
    spec = _tiny().spec
    data = open_data(image_folder, spec.input_size, spec.mean, spec.std)
    config = ShrinkConfig(target=1.0, allocation="uniform", schedule="oneshot", calibration_images=8)
    calls = []

    def killed_on_third(*args, **kwargs):
        calls.append(args[1].criterion + str(args[1].target))
        if len(calls) == 3:
            raise KeyboardInterrupt  # what Ctrl-C or a kill does mid-sweep
        return shrink(*args, **kwargs)

    with pytest.raises(KeyboardInterrupt):
        run_sweep(_tiny, [0.8, 0.6], ["l1", "random"], config, tmp_path / "s", data, shrink_fn=killed_on_third)
    assert sorted(p.name for p in (tmp_path / "s" / "points").iterdir()) == ["l1@0.6.json", "l1@0.8.json"]

    calls.clear()
    points = run_sweep(_tiny, [0.8, 0.6], ["l1", "random"], config, tmp_path / "s", data, shrink_fn=killed_on_third)
    assert calls == ["random0.8", "random0.6"]  # the two finished points were read back, not recomputed
    assert len(points) == 4 and all(p.top1_after_pruning is not None for p in points)
    assert all(abs(p.params_ratio - p.target) <= 0.01 for p in points)
    summary = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert summary["best_score"]["score"] == max(p.score for p in points)
    assert set(summary["winner_per_target"]) == {"0.8", "0.6"}
    assert (tmp_path / "s" / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    header = (tmp_path / "s" / "sweep.csv").read_text().splitlines()[0]
    assert "score" in header and "params_ratio" in header


def test_score_and_pareto_front():
    def point(c, ratio, acc):
        return SweepPoint(c, ratio, "params", ratio, ratio, 0.9, acc, None, 1.0)

    a, b, c = point("a", 0.8, 0.85), point("b", 0.6, 0.80), point("c", 0.8, 0.70)
    assert a.score == pytest.approx((0.85 + 0.2) / 2)
    assert pareto_front([a, b, c]) == [b, a]  # c is beaten by a: same size, less accurate


def test_sweep_cli_refuses_unknown_criterion_before_any_work(run_cli, tmp_path):
    res = run_cli("sweep", "mobilenet_v2", "--criteria", "l1,magic", "--out", tmp_path / "s")
    assert res.code == 2 and "unknown criterion 'magic'" in res.err
    assert not (tmp_path / "s").exists()


def test_plot_filters_draws_every_conv_and_counts_dead_filters(run_cli, tmp_path):
    from mobileprune import save_output
    from mobileprune.reporting.plots import filter_norms

    loaded = _tiny()
    loaded.model.features[0][0].weight.data[:3] = 0
    norms = filter_norms(loaded.model)
    assert int((norms["features.0.0"] == 0).sum()) == 3 and len(norms) == 52  # every conv, depthwise too
    save_output(shrink(loaded, ShrinkConfig(target=1.0, allocation="uniform")), tmp_path / "m")
    res = run_cli("plot-filters", tmp_path / "m", "--out", tmp_path / "f.png")
    assert res.code == 0, res.err
    assert "52 conv layers" in res.out and "3 all-zero" in res.out
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_every_point_of_a_random_weight_sweep_starts_from_the_same_model(tmp_path):
    """Resuming must give what an uninterrupted sweep gives, so no point may see a differently seeded model."""
    seen = []

    def record(loaded, config, data, eval_data, progress):
        seen.append(torch.cat([p.flatten() for p in loaded.model.parameters()]).sum().item())
        return shrink(loaded, config, data, eval_data, progress)

    def load():
        return load_model("mobilenet_v2", arch_kwargs={"num_classes": 10, "width_mult": 0.25}, input_size=32)

    config = ShrinkConfig(target=1.0, allocation="uniform", schedule="oneshot", calibration_images=4)
    torch.manual_seed(123)  # whatever the caller's random state
    run_sweep(load, [0.9, 0.8], ["l1", "random"], config, tmp_path / "s", shrink_fn=record)
    assert len(seen) == 4 and len(set(seen)) == 1
