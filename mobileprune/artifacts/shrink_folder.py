"""The `shrink` output folder, written atomically, and `load(DIR)` that reads it back without pickles.

    model.pt2           torch.export ExportedProgram: `torch.export.load(p).module()`, no mobileprune needed
    model.safetensors   the weights; with plan.json, `mobileprune.load(DIR)` rebuilds the model
    plan.json           architecture spec + channel plan (the steps to replay on the unpruned arch)
    report.json         sizes, ratios, per-layer channels, accuracy, timings, versions
    masks.safetensors   sparsify outputs only: one uint8 mask per sparse layer ("<layer>.weight_mask", 1 = kept)

Everything is written into a temporary sibling folder that replaces `DIR` by rename at the end, so an
interrupted run leaves the previous folder (or nothing), never a half-written one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import atomic_folder, prepare_output_dir, write_json
from ..errors import UserError
from ..models import ModelSpec, build_model, classifier_module
from ..prune.plan import PLAN_FORMAT, ChannelPlan, PlanError
from ..prune.report import ShrinkReport
from .checkpoints import sha256_of
from .loaded_model import LoadedModel
from .safe_pt2 import check_pt2, load_exported

if TYPE_CHECKING:
    from ..prune.pipeline import ShrinkResult

OUTPUT_FILES = ("model.pt2", "model.safetensors", "plan.json", "report.json", "masks.safetensors")
MASKS_FILE, MASK_SUFFIX = "masks.safetensors", ".weight_mask"
EXPORTED_ONLY = "shrink output (model.pt2)"  # LoadedModel.weights of a folder made from a pickled module


class ExportedModule(torch.nn.Module):
    """A `torch.export` graph as a module that converters and benchmarks can call `.eval()` on.

    The graph is fixed at export: it has no train mode to switch, and no architecture to prune again.
    """

    def __init__(self, program: torch.nn.Module):
        super().__init__()
        self.program = program

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 1 or torch.compiler.is_exporting() or torch.compiler.is_compiling():
            return self.program(x)  # being exported again: the graph's own batch of 1 must show
        return torch.cat([self.program(x[i : i + 1]) for i in range(x.shape[0])])  # exported with a batch of 1

    def train(self, mode: bool = True) -> ExportedModule:
        return self


def is_shrink_output(folder: Path) -> bool:
    """A folder `save_output` wrote (its plan and report, nothing but the files and bundle it writes, and maybe
    the checkpoint of a run writing it again), or only a run's checkpoint."""
    names = {p.name for p in folder.iterdir()}
    if names == {"checkpoint"}:  # an interrupted run's checkpoint (prune/checkpoint.py), nothing else
        return True
    return {"plan.json", "report.json"} <= names and names <= {*OUTPUT_FILES, "bundle", "checkpoint"}


def check_output_dir(out: str | Path, force: bool = False) -> Path:
    """Fail before any work if `out` cannot be written or would overwrite something unasked (see atomic.py)."""
    return prepare_output_dir(out, force, is_shrink_output, "shrink output (plan.json, report.json, model files)")


def save_output(result: ShrinkResult, out: str | Path, force: bool = False) -> Path:
    """Write a `ShrinkResult` to `out` (see module docstring); returns the folder."""
    out = check_output_dir(out, force)
    with atomic_folder(out, replace=force, is_ours=is_shrink_output) as tmp:
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
        if result.masks:
            masks = {name + MASK_SUFFIX: m.to(torch.uint8).contiguous() for name, m in result.masks.items()}
            save_file(masks, tmp / MASKS_FILE)
        for name in (*OUTPUT_FILES[:3], MASKS_FILE):
            if (tmp / name).exists():
                files[name] = (tmp / name).stat().st_size
        result.report.files = files
        write_json(tmp / "report.json", result.report.to_json())
    return out


def load_output(folder: str | Path, trust_pickle: bool = False) -> LoadedModel:
    """Rebuild the pruned model of a `shrink` output folder: arch from spec, replay plan, load weights.

    Only a folder made from a pickled module (no architecture to rebuild) reads its `model.pt2`, and
    only after `safe_pt2` found nothing in it that would run code, unless `trust_pickle`. A damaged or
    tampered file is a `UserError` naming the file and what is wrong with it.
    """
    folder = Path(folder)
    spec, plan = read_plan(folder)
    if spec.library == "pickle":  # no architecture to rebuild: the exported program is the model
        exported = folder / "model.pt2"
        if not exported.exists():
            raise UserError(f"'{folder}' came from a pickled module and has no model.pt2 to load")
        model = ExportedModule(load_exported(exported, trust_pickle).module())
        return LoadedModel(model, spec, str(folder), EXPORTED_ONLY, sha256_of(exported), plan)
    weights = folder / "model.safetensors"
    if not weights.exists():
        raise UserError(f"'{folder}' has no model.safetensors")
    model = build_model(spec)
    example = torch.randn(1, 3, spec.input_size, spec.input_size)
    try:
        plan.replay(model, example, [classifier_module(model, spec)])
    except PlanError as exc:
        raise UserError(f"'{folder / 'plan.json'}' is damaged: {exc}") from None
    state = read_weights(weights)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UserError(f"'{weights}' does not fit the replayed plan: {str(exc).splitlines()[0]}") from exc
    masks = read_masks(folder / MASKS_FILE, state) if (folder / MASKS_FILE).exists() else {}
    return LoadedModel(model.eval(), spec, str(folder), "shrink output", sha256_of(weights), plan, masks=masks)


def read_masks(path: Path, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A sparsify output's masks, each checked against its layer's weight (shape, and zeros where masked)."""
    masks = {}
    for key, value in read_weights(path).items():
        layer = key.removesuffix(MASK_SUFFIX)
        weight = state.get(layer + ".weight")
        if not key.endswith(MASK_SUFFIX) or weight is None or weight.shape != value.shape:
            raise UserError(f"'{path}' is damaged: '{key}' is not the mask of a weight of this model")
        keep = value.bool()
        if bool(weight[~keep].ne(0).any()):
            raise UserError(f"'{path}' does not match model.safetensors: '{layer}' has nonzero weights where masked")
        masks[layer] = keep
    return masks


def refuse_unfinished(folder: Path) -> None:
    """A folder that holds only a killed run's checkpoint is refused with how to finish it."""
    from ..prune.checkpoint import is_checkpoint_only  # (prune/ imports the training loop: only when needed)

    if is_checkpoint_only(folder):
        raise UserError(
            f"'{folder}' holds only the checkpoint of an interrupted run: finish it by running the same command "
            "again with --resume"
        )


def read_plan(folder: Path) -> tuple[ModelSpec, ChannelPlan]:
    """plan.json's spec and steps, checked for form and version (not yet against the architecture)."""
    plan_file = folder / "plan.json"
    if not plan_file.exists():
        refuse_unfinished(folder)
        raise UserError(f"'{folder}' is a folder but not a mobileprune output (no plan.json)")
    try:
        data = json.loads(plan_file.read_text())
        version = data.get("format", 1)
        if not isinstance(version, int) or version > PLAN_FORMAT:
            raise UserError(
                f"'{plan_file}' has plan format {version!r}; this mobileprune reads format {PLAN_FORMAT} and "
                "older: upgrade mobileprune to load it"
            )
        return ModelSpec.from_json(data["spec"]), ChannelPlan.from_json(data["steps"])
    except UserError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise UserError(f"'{plan_file}' is damaged ({what})") from None


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"'{path}' is damaged ({str(exc).strip()[:160]})") from None


def verify_output(folder: str | Path) -> ShrinkReport:
    """The report of a shrink folder whose every file was read and checked (`info` uses it): the model is
    rebuilt from plan.json and model.safetensors (or model.pt2's safety checked, for a pickled module)."""
    folder = Path(folder)
    report = read_report(folder)
    spec, _ = read_plan(folder)
    if spec.library == "pickle":
        if not (folder / "model.pt2").exists():
            raise UserError(f"'{folder}' came from a pickled module and has no model.pt2 to load")
        check_pt2(folder / "model.pt2")
    else:
        load_output(folder)
    return report


def load(folder: str | Path) -> torch.nn.Module:
    """The pruned `nn.Module` of a `shrink` output folder, ready for eval."""
    return load_output(folder).model


def read_report(folder: str | Path) -> ShrinkReport:
    path = Path(folder) / "report.json"
    if not path.exists():
        refuse_unfinished(Path(folder))
        raise UserError(f"'{folder}' has no report.json: not a mobileprune shrink output")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"'{path}' is damaged (not valid JSON: {exc})") from None
    return ShrinkReport.from_json(data, str(path))
