"""Long runs that survive: `--resume` after kill -9 at three points, and retraining on two processes (torchrun)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import lively, write_images
from safetensors.torch import load_file

from mobileprune import load_model
from mobileprune.train.sampling import EpochBatches

HERE = Path(__file__).parent
EVERY = 2  # --checkpoint-every: the most training steps a resumed run may redo
RUN = [
    "--arch", "mobilenet_v1", "--num-classes", "2", "--input-size", "32", "--target", "0.7", "--by", "macs",
    "--batch-size", "7", "--calibration-images", "8", "--reconstruct-images", "14", "--lr", "1e-3",
    "--checkpoint-every", str(EVERY), "--quiet",
]  # fmt: skip


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A lively 2-class MobileNetV1 checkpoint and 49 training images (one of them corrupt)."""
    root = tmp_path_factory.mktemp("resume")
    colours = {"red": (220, 30, 30), "blue": (30, 30, 220)}
    write_images(root / "data" / "train", colours, 24)
    write_images(root / "data" / "val", colours, 6, seed=1)
    (root / "data" / "train" / "red" / "broken.jpg").write_bytes(b"not a jpeg")
    torch.manual_seed(0)
    model = lively(load_model("mobilenet_v1", arch_kwargs={"num_classes": 2}).model, 32)
    torch.save(model.state_dict(), root / "v1.pth")
    return root


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}


def _shrink(work: Path, out: str, *extra: str, kill: tuple[str, int] | None = None) -> subprocess.CompletedProcess:
    return _command(work, ["shrink", "v1.pth", *RUN, "--out", out, *extra], kill)


def _command(work: Path, args: list[str], kill: tuple[str, int] | None = None) -> subprocess.CompletedProcess:
    """The CLI in `work`, or with `kill` (POINT, N) killed by tools/kill_at.py."""
    head = (
        [sys.executable, str(HERE.parent / "tools" / "kill_at.py"), kill[0], str(kill[1])]
        if kill
        else [sys.executable, "-m", "mobileprune"]
    )
    return subprocess.run([*head, *args], cwd=work, env=_env(), capture_output=True, text=True, timeout=300)


def _saved(folder: Path) -> dict:
    return torch.load(folder / "checkpoint" / "state.pt", map_location="cpu", weights_only=True)


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_killed_three_times_then_resumed_equals_the_uninterrupted_run(work, run_cli, monkeypatch):
    schedule = ["--data", "data", "--schedule", "layerwise", "--steps-per-layer", "3", "--epochs", "2"]
    done = _shrink(work, "whole", *schedule)
    assert done.returncode == 0, done.stderr
    assert not (work / "whole" / "checkpoint").exists()  # a finished run leaves no checkpoint behind

    # 1. inside the sensitivity measurement, right after its 3rd group was saved
    killed = _shrink(work, "killed", *schedule, kill=("sensitivity", 3))
    assert killed.returncode == -9, killed.stderr
    state = _saved(work / "killed")
    assert len(state["partial"]["allocate/1"]) == 3 and "before" in state["done"]

    # the same command without --resume, or with a setting that changes the result, touches nothing
    monkeypatch.chdir(work)
    before = (work / "killed" / "checkpoint" / "state.pt").read_bytes()
    res = run_cli("shrink", "v1.pth", *RUN, "--out", "killed", *schedule)
    assert res.code == 2 and "--resume" in res.err and len(res.err.strip().splitlines()) == 1
    res = run_cli(
        "shrink", "v1.pth", *[a if a != "1e-3" else "2e-3" for a in RUN], "--out", "killed", *schedule, "--resume"
    )
    assert res.code == 2 and "lr" in res.err and len(res.err.strip().splitlines()) == 1, res.err
    assert (work / "killed" / "checkpoint" / "state.pt").read_bytes() == before

    # 2. in the layerwise schedule and 3. in the final fine-tune's second epoch (its first scored by the
    # validation images: the best weights so far travel in the checkpoint), between two checkpoints
    for point, n in (("layerwise", 5), ("finetune", 9)):
        killed = _shrink(work, "killed", *schedule, "--resume", kill=(point, n))
        assert killed.returncode == -9, killed.stderr
        at_kill = int(re.search(r"killed at step (\d+)", killed.stderr).group(1))
        state = _saved(work / "killed")
        redone = at_kill - state["trainer"]["steps_done"]
        assert 1 <= redone <= EVERY, (point, at_kill, redone)
    assert [h[0] for h in state["partial"]["fine_tune"]["history"]] == [1]  # epoch 1 scored, and saved with its step

    resumed = _shrink(work, "killed", *schedule, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert _same_weights(work / "whole", work / "killed")  # bit-exact on the CPU
    assert (work / "whole" / "plan.json").read_text() == (work / "killed" / "plan.json").read_text()
    checks = [
        json.loads((work / name / "report.json").read_text())["retraining"]["check"] for name in ("whole", "killed")
    ]
    assert all(c.pop("seconds") >= 0 for c in checks)  # time spent scoring: the one thing allowed to differ
    assert checks[0] == checks[1] and [h["epoch"] for h in checks[0]["history"]] == [1, 2]
    assert not (work / "killed" / "checkpoint").exists()


SPARSIFY = [
    "--arch", "mobilenet_v1", "--num-classes", "2", "--input-size", "32", "--data", "data", "--batch-size", "7",
    "--lr", "1e-3", "--checkpoint-every", str(EVERY), "--quiet",
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "point", "n"),
    [
        (["--method", "gradual", "--epochs", "2", "--method-option", "prunes=4"], "gradual", 9),  # masks grew
        (["--method", "lottery", "--epochs", "2", "--method-option", "rewind_step=2"], "lottery", 3),  # late rewind
        # after the structured step, in the fine-tune's second epoch (its first scored by the validation images)
        (["--method", "hybrid", "--method-option", "then=magnitude", "--epochs", "2"], "finetune", 9),
    ],
    ids=["gradual", "lottery", "hybrid"],
)
def test_sparsify_killed_in_training_then_resumed_equals_the_uninterrupted_run(work, method, point, n):
    """Each method keeps more than weights and trainer: masks that grow (gradual), a late-rewind copy and
    the round (lottery), a structured plan to replay and the best epoch so far (hybrid, then magnitude)."""
    name = method[1]
    whole = _command(work, ["sparsify", "v1.pth", "--sparsity", "0.6", *SPARSIFY, *method, "--out", f"s-{name}"])
    assert whole.returncode == 0, whole.stderr
    args = ["sparsify", "v1.pth", "--sparsity", "0.6", *SPARSIFY, *method, "--out", f"k-{name}"]
    killed = _command(work, args, kill=(point, n))
    assert killed.returncode == -9, killed.stderr
    at_kill = int(re.search(r"killed at step (\d+)", killed.stderr).group(1))
    assert 1 <= at_kill - _saved(work / f"k-{name}")["trainer"]["steps_done"] <= EVERY
    if name == "gradual":  # the same command without --resume refuses (once: each run costs seconds)
        refused = _command(work, args)
        assert refused.returncode == 2 and "--resume" in refused.stderr
        unfinished = _command(work, ["info", f"k-{name}"])  # and reading the folder says how to finish it
        assert unfinished.returncode == 2 and "interrupted run" in unfinished.stderr and "--resume" in unfinished.stderr
    resumed = _command(work, [*args, "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    a, b = work / f"s-{name}", work / f"k-{name}"
    assert _same_weights(a, b)  # bit-exact on the CPU
    masks = [load_file(folder / "masks.safetensors") for folder in (a, b)]
    assert masks[0].keys() == masks[1].keys() and all(torch.equal(masks[0][k], masks[1][k]) for k in masks[0])
    assert (a / "plan.json").read_text() == (b / "plan.json").read_text()
    reports = [json.loads((folder / "report.json").read_text()) for folder in (a, b)]
    for report in reports:
        report.pop("timings_s"), report.pop("command", None), report["retraining"].pop("data")
        report["retraining"].get("check", {}).pop("seconds", None)
    assert reports[0] == reports[1]
    assert not (b / "checkpoint").exists()


def test_torchrun_on_two_processes_equals_one_process_with_the_same_global_batch(work):
    """gloo on the CPU; distillation with the centred loss, whose batch mean is taken over both processes.

    Equal up to float summation order: two processes add each gradient in two halves. One step only:
    distilling this toy model on two colours is chaotic, the last-bit differences grow 10-100x per step, so
    already after two steps the weights agree or not by luck (to 1e-5 or 3e-2 of the change, depending on
    the learning rate and on the last bits of the reconstructed starting weights). After one step they
    agree to about 1e-6 of the change; without distributed.py's loss scaling they are 16% of it apart.
    SGD, because AdamW divides each step by the gradient's RMS and so turns noise in near-zero gradients
    into steps of the full learning rate: comparing weights after AdamW says nothing about DDP.
    """
    train = ["--data", "data", "--distill", "--optimizer", "sgd", "--no-retrain-check"]  # keep the step to compare
    runs = {"start": ["--epochs", "0"], "one": ["--epochs", "0.15"]}  # 1 step of 7 (4 rounds of allocation first)
    for out, epochs in runs.items():
        res = _shrink(work, out, *train, *epochs)
        assert res.returncode == 0, res.stderr
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "mobileprune"]
    two = subprocess.run(
        [*launcher, "shrink", "v1.pth", *RUN, "--out", "two", *train, "--epochs", "0.15"],
        cwd=work, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    start, one, two = (load_file(work / name / "model.safetensors") for name in ("start", "one", "two"))
    weights = [k for k in one if one[k].is_floating_point()]

    def norm(a: dict, b: dict) -> float:
        return sum(float((a[k] - b[k]).norm()) ** 2 for k in weights) ** 0.5

    assert norm(one, start) > 1.0  # retraining really moved the weights
    assert norm(one, two) <= 1e-4 * norm(one, start)
    assert (work / "one" / "plan.json").read_text() == (work / "two" / "plan.json").read_text()


def test_each_process_gets_its_share_of_every_global_batch():
    one = EpochBatches(23, 8, seed=3)
    shares = [EpochBatches(23, 8, seed=3, rank=r, world=3) for r in range(3)]
    for whole, *parts in zip(one, *shares, strict=False):
        assert sorted(d.index for d in whole) == sorted(d.index for p in parts for d in p)
    assert len(shares[0]) == 3  # the last global batch (7 images) gives each of the 3 an image
    fresh = EpochBatches(23, 8, seed=3)
    fresh.resume_at(epoch=1, batch=0)
    epoch1 = list(fresh)
    one.resume_at(epoch=1, batch=2)  # a resumed run starts at epoch 1's third batch, same images
    assert list(one) == epoch1[2:] and all(d.epoch == 1 for b in epoch1 for d in b)
    assert [d.index for b in epoch1 for d in b] != list(range(23))  # shuffled


def test_bad_resume_inputs_are_one_line_and_touch_nothing(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = ["shrink", "mobilenet_v2", "--num-classes", "2", "--input-size", "32", "--quiet"]
    res = run_cli(*base, "--out", "nothing", "--resume")
    assert res.code == 2 and "no checkpoint" in res.err and not (tmp_path / "nothing").exists()
    state = tmp_path / "broken" / "checkpoint" / "state.pt"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"\x80\x04 half a file")
    res = run_cli(*base, "--out", "broken", "--resume")
    assert res.code == 2 and "cannot be read" in res.err and len(res.err.strip().splitlines()) == 1
    assert state.read_bytes() == b"\x80\x04 half a file"
    res = run_cli(*base, "--out", "x", "--checkpoint-every", "0")
    assert res.code == 2 and "--checkpoint-every" in res.err
    res = run_cli(*base, "--out", "x", "--amp")
    assert res.code == 2 and "--amp" in res.err and not (tmp_path / "x").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_torchrun_with_cuda_and_no_gpu_is_one_line(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    res = run_cli("shrink", "mobilenet_v2", "--num-classes", "2", "--device", "cuda", "--out", "o", "--quiet")
    assert res.code == 2 and "no usable GPU" in res.err and len(res.err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_a_checkpoint_from_before_a_setting_existed_resumes_only_at_its_default():
    """A setting added after the checkpoint was written: the old run behaved as its default does."""
    from mobileprune.errors import UserError
    from mobileprune.prune.checkpoint import RunCheckpoint

    old = {"config": {"target": 0.5, "train": {"lr": 3e-5}}}  # written before train.student_dropout existed
    defaults = {"config": {"target": 1.0, "train": {"lr": 1e-3, "student_dropout": True}}}
    same = {"config": {"target": 0.5, "train": {"lr": 3e-5, "student_dropout": True}}}
    RunCheckpoint(saved={"settings": old}).begin(same, defaults)
    changed = {"config": {"target": 0.5, "train": {"lr": 3e-5, "student_dropout": False}}}
    with pytest.raises(UserError, match=r"without student-dropout \(as if True\), this run has False"):
        RunCheckpoint(saved={"settings": old}).begin(changed, defaults)
    with pytest.raises(UserError, match="student-dropout"):  # without defaults nothing is assumed
        RunCheckpoint(saved={"settings": old}).begin(same)
    dropped = {"config": {"target": 0.5, "train": {}}}  # a setting this version no longer has
    with pytest.raises(UserError, match="lr = 3e-05, this run has None"):
        RunCheckpoint(saved={"settings": old}).begin(dropped, defaults)
    with pytest.raises(UserError, match="target = 0.5, this run has 0.7"):  # defaults never excuse a change
        RunCheckpoint(saved={"settings": old}).begin({"config": {**same["config"], "target": 0.7}}, defaults)
