"""--out rules: never replace what is not ours, never replace anything without --force, clean up after kills."""

import gc
import os
import tempfile

import pytest

from mobileprune import ShrinkConfig, UserError, load_model, save_output, shrink
from mobileprune.artifacts.shrink_folder import check_output_dir, is_shrink_output
from mobileprune.atomic import atomic_folder, scratch_folder


@pytest.fixture(scope="module")
def result():
    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 10, "width_mult": 0.25}, input_size=32)
    return shrink(loaded, ShrinkConfig(target=0.9, allocation="uniform"))


def test_a_folder_filled_meanwhile_is_never_replaced_without_force(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UserError, match="filled by another run while this one worked"), atomic_folder(out) as tmp:
        (tmp / "mine.txt").write_text("this run")
        out.mkdir()
        (out / "theirs.txt").write_text("the other run")  # the other run finished first
    assert (out / "theirs.txt").read_text() == "the other run"
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("out.")]
    assert len(kept) == 1 and (kept[0] / "mine.txt").read_text() == "this run"


def test_force_refuses_a_folder_with_the_users_own_files(run_cli, tmp_path):
    out = tmp_path / "userdir"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    res = run_cli("shrink", "mobilenet_v2", "--input-size", "32", "--out", out, "--force", "--quiet")
    assert res.code == 2 and "holds files mobileprune did not write" in res.err
    assert (out / "thesis.tex").read_text() == "precious"


def test_force_replaces_a_previous_output(result, tmp_path):
    out = save_output(result, tmp_path / "out")
    (out / "model.pt2").unlink()  # any subset of our files is still ours
    assert is_shrink_output(out)
    save_output(result, out, force=True)
    assert (out / "model.pt2").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_force_through_a_symlink_writes_the_target_and_leaves_nothing_stray(result, tmp_path):
    target = save_output(result, tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(target)
    save_output(result, link, force=True)
    assert link.is_symlink() and link.resolve() == target and (target / "plan.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_out_dot_is_one_clear_line(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").write_text("x")
    res = run_cli("shrink", "mobilenet_v2", "--input-size", "32", "--out", ".", "--force", "--quiet")
    assert res.code == 2 and "is the current folder" in res.err and "internal error" not in res.err


def test_temporaries_of_killed_runs_are_removed_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    dead = tmp_path / f".out.{2**22 + 12345}.abcd.tmp"  # above the default pid_max: no such process
    alive = tmp_path / f".out.{os.getppid()}.efgh.tmp"
    dead.mkdir()
    alive.mkdir()
    (dead / "model.pt2").write_bytes(b"half a model")
    check_output_dir(out)
    assert not dead.exists() and alive.exists()


def test_a_scratch_folder_goes_with_its_owner_and_sweeps_what_killed_processes_left(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = tmp_path / f"mobileprune-probe-{2**22 + 12345}.abcd"  # above the default pid_max: no such process
    alive = tmp_path / f"mobileprune-probe-{os.getppid()}.efgh"
    other = tmp_path / f"mobileprune-split-{2**22 + 12345}.ijkl"  # another prefix: not ours to judge
    for folder in (dead, alive, other):
        folder.mkdir()

    class Owner:
        pass

    owner = Owner()
    folder = scratch_folder(owner, "mobileprune-probe-")
    assert folder.parent == tmp_path and folder.name.startswith(f"mobileprune-probe-{os.getpid()}.")
    assert not dead.exists() and alive.exists() and other.exists()
    (folder / "1").mkdir()
    (folder / "1" / "model.tflite").write_bytes(b"TFL3")
    del owner
    gc.collect()
    assert not folder.exists()
