"""The `shrink` output folder, written atomically, and `load(DIR)` that reads it back without pickles.

    model.pt2           torch.export ExportedProgram: `torch.export.load(p).module()`, no mobileprune needed
    model.safetensors   the weights; with plan.json, `mobileprune.load(DIR)` rebuilds the model
    plan.json           architecture spec + channel plan (the steps to replay on the unpruned arch)
    report.json         sizes, ratios, per-layer channels, accuracy, timings, versions

Everything is written into a temporary sibling folder that replaces `DIR` by rename at the end, so an
interrupted run leaves the previous folder (or nothing), never a half-written one.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from ..atomic import atomic_folder, write_json
from ..errors import UserError
from ..models import ModelSpec, build_model, classifier_module
from ..prune.plan import PLAN_FORMAT, ChannelPlan
from ..prune.report import ShrinkReport
from .checkpoints import sha256_of
from .loaded_model import LoadedModel
from .safe_pt2 import load_exported

if TYPE_CHECKING:
    from ..prune.pipeline import ShrinkResult

OUTPUT_FILES = ("model.pt2", "model.safetensors", "plan.json", "report.json")


def check_output_dir(out: str | Path, force: bool = False) -> Path:
    """Fail before any work if `out` cannot be written or would overwrite something unasked."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}' exists and is a file; choose a folder path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(f"--out '{out}' exists and is not empty; pass --force to replace it")
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise UserError(f"--out '{out}' is not writable ({exc.strerror or exc}); choose another folder") from exc
    return out


def save_output(result: ShrinkResult, out: str | Path, force: bool = False) -> Path:
    """Write a `ShrinkResult` to `out` (see module docstring); returns the folder."""
    out = check_output_dir(out, force)
    with atomic_folder(out) as tmp:
        model = result.model.eval()
        files: dict[str, Any] = {}
        try:
            program = torch.export.export(model, (result.example_input,))
            torch.export.save(program, tmp / "model.pt2")
        except Exception as exc:  # an export failure must not lose the pruned weights
            files["model.pt2"] = f"not written: torch.export failed ({type(exc).__name__}: {exc})"
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, tmp / "model.safetensors", metadata={"format": "pt", "arch": result.spec.arch})
        plan = {"format": PLAN_FORMAT, "spec": result.spec.to_json(), "steps": result.plan.to_json()}
        write_json(tmp / "plan.json", plan)
        for name in OUTPUT_FILES[:3]:
            if (tmp / name).exists():
                files[name] = (tmp / name).stat().st_size
        result.report.files = files
        write_json(tmp / "report.json", result.report.to_json())
    return out


def load_output(folder: str | Path, trust_pickle: bool = False) -> LoadedModel:
    """Rebuild the pruned model of a `shrink` output folder: arch from spec, replay plan, load weights.

    Only a folder made from a pickled module (no architecture to rebuild) reads its `model.pt2`, and
    only after `safe_pt2` found nothing in it that would run code, unless `trust_pickle`.
    """
    folder = Path(folder)
    plan_file = folder / "plan.json"
    if not plan_file.exists():
        raise UserError(f"'{folder}' is a folder but not a mobileprune output (no plan.json)")
    try:
        data = json.loads(plan_file.read_text())
        spec = ModelSpec.from_json(data["spec"])
        plan = ChannelPlan.from_json(data["steps"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"'{plan_file}' is damaged ({type(exc).__name__}: {exc})") from exc
    if spec.library == "pickle":  # no architecture to rebuild: the exported program is the model
        exported = folder / "model.pt2"
        if not exported.exists():
            raise UserError(f"'{folder}' came from a pickled module and has no model.pt2 to load")
        model = load_exported(exported, trust_pickle).module()
        return LoadedModel(model, spec, str(folder), "shrink output (model.pt2)", sha256_of(exported), plan)
    weights = folder / "model.safetensors"
    if not weights.exists():
        raise UserError(f"'{folder}' has no model.safetensors")
    model = build_model(spec)
    example = torch.randn(1, 3, spec.input_size, spec.input_size)
    plan.replay(model, example, [classifier_module(model, spec)])
    state = load_file(weights)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UserError(f"'{weights}' does not fit the replayed plan: {str(exc).splitlines()[0]}") from exc
    return LoadedModel(model.eval(), spec, str(folder), "shrink output", sha256_of(weights), plan)


def load(folder: str | Path) -> torch.nn.Module:
    """The pruned `nn.Module` of a `shrink` output folder, ready for eval."""
    return load_output(folder).model


def read_report(folder: str | Path) -> ShrinkReport:
    path = Path(folder) / "report.json"
    if not path.exists():
        raise UserError(f"'{folder}' has no report.json: not a mobileprune shrink output")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"'{path}' is damaged (not valid JSON: {exc})") from None
    return ShrinkReport.from_json(data, str(path))
