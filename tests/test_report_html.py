"""`report`: one self-contained HTML page per shrink run, checked as text and as a browser renders it."""

import re
import shutil
import subprocess

import numpy as np
import pytest
from conftest import lively, write_images

from mobileprune import ShrinkConfig, load_model, save_output, shrink


@pytest.fixture
def run_with_compare(run_cli, tmp_path):
    """A shrink run with evaluation images, and a compare output of it: what a full report shows."""
    palette = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "grey": (128, 128, 128)}
    write_images(tmp_path / "eval", palette, 6)
    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 4, "width_mult": 0.25})
    loaded.spec = type(loaded.spec)(**{**loaded.spec.to_json(), "input_size": 32})
    lively(loaded.model)
    save_output(shrink(loaded, ShrinkConfig(target=1.0, allocation="uniform")), tmp_path / "orig")
    args = ["--allocation", "uniform", "--target", "0.5", "--eval-data", tmp_path / "eval", "--quiet"]
    res = run_cli("shrink", tmp_path / "orig", *args, "--out", tmp_path / "shrunk")
    assert res.code == 0, res.err
    res = run_cli(
        "compare", tmp_path / "orig", tmp_path / "shrunk", "--eval-data", tmp_path / "eval", "--out", tmp_path / "c"
    )
    assert res.code == 0, res.err
    return tmp_path


def test_report_is_one_self_contained_page_with_the_runs_numbers(run_cli, run_with_compare):
    import json

    folder = run_with_compare
    res = run_cli("report", folder / "shrunk", "--compare", folder / "c", "--out", folder / "report.html")
    assert res.code == 0, res.err
    page = (folder / "report.html").read_text()
    report = json.loads((folder / "shrunk" / "report.json").read_text())
    compared = json.loads((folder / "c" / "compare.json").read_text())
    assert f"{report['after']['params']:,}" in page and f"{report['achieved']:.4f}" in page
    assert f"<b id='pie-count'>{compared['pie_count']}</b>" in page
    assert "mobileprune shrink" in page and "--target 0.5" in page  # the exact command
    assert report["accuracy"]["worst_classes"] and "id='worst-classes'" in page
    assert page.count("data:image/png;base64,") >= 3  # channels, classes, exemplars: inline
    assert not re.search(r"(src|href)=['\"]https?:", page)  # nothing fetched from the network
    res = run_cli("report", folder / "shrunk", "--out", folder / "report.html")
    assert res.code == 2 and "exists; pass --force" in res.err
    res = run_cli("report", folder / "shrunk", "--compare", folder / "shrunk", "--out", folder / "r2.html")
    assert res.code == 2 and "has no compare.json" in res.err


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium to render the page")
def test_report_renders_in_headless_chromium(run_cli, run_with_compare):
    from PIL import Image

    folder = run_with_compare
    assert run_cli("report", folder / "shrunk", "--compare", folder / "c", "--out", folder / "report.html").code == 0
    url = (folder / "report.html").resolve().as_uri()
    common = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert "pruning-identified exemplars" in dom and 'id="worst-classes"' in dom
    shot = folder / "shot.png"
    subprocess.run([*common, f"--screenshot={shot}", "--window-size=1200,1600", url], capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.005  # text and charts drawn, not a blank page
