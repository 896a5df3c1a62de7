"""The last phase of `shrink`: the pruned model and its report, from what the phases left in the run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from ..compare.damage import damage
from ..models import ModelSpec
from ..models.labels import class_names
from ..reporting.provenance import versions
from ..version import __version__
from .cost import Cost, count_cost
from .measured_target import kept_check, latency_report
from .plan import ChannelPlan
from .report import ShrinkReport, layer_changes, layer_shapes

if TYPE_CHECKING:
    from .pipeline import ShrinkRun


@dataclass
class ShrinkResult:
    model: nn.Module
    spec: ModelSpec
    plan: ChannelPlan
    report: ShrinkReport
    example_input: torch.Tensor
    kept_outputs: dict[str, list[int]] = field(default_factory=dict)  # per edited layer: original output indices
    masks: dict[str, torch.Tensor] = field(default_factory=dict)  # sparsify: per layer, True = weight kept


def finish(run: ShrinkRun) -> ShrinkResult:
    config, loaded, graph = run.config, run.loaded, run.graph
    after = count_cost(run.model, run.example)
    run.timings["total_s"] = time.time() - run.started
    run.accuracy.worst_classes = worst_classes(run)
    report = ShrinkReport(
        mobileprune=__version__,
        source={"path": loaded.source, "weights": loaded.weights, "sha256": loaded.sha256},
        spec=loaded.spec,
        config=config.to_json(),
        target=config.target,
        by=config.by,
        achieved=round(_achieved(after, run), 4),
        before=run.before,
        after=after,
        allocation={"strategy": _strategy(run), "removed_units": run.removed},
        groups=[
            {"group": g.name, "before": run.channels_before[g.name], "after": graph.channels(g.name)}
            for g in graph.groups
        ],
        layers=layer_changes(run.layers_before, layer_shapes(run.model)),
        schedule_log=run.schedule_log,
        accuracy=run.accuracy,
        retraining=_retrain_note(run),
        timings_s={k: round(v, 2) for k, v in run.timings.items()},
        versions=versions(),
        reconstruction=run.reconstruction,
        latency=latency_report(run),
    )
    return ShrinkResult(run.model.eval(), loaded.spec, run.plan, report, run.example, dict(run.kept))


def worst_classes(run: ShrinkRun, shown: int = 10) -> list[dict] | None:
    """The classes that lost most top-1 from before pruning to the end, when both were measured."""
    before, final = run.accuracy.before, run.accuracy.final()
    if before is None or final is None or before.per_class is None or final.per_class is None:
        return None
    names = class_names(run.loaded.spec) or (run.eval_set.classes if run.eval_set is not None else None)
    return [row.to_json() for row in damage(before.per_class, [final.per_class], names or None)[:shown]]


def _achieved(after: Cost, run: ShrinkRun) -> float:
    """The target's metric after / before: counted where it can be, else the last measurement, else predicted."""
    by = run.config.by
    if by in ("params", "macs"):
        return after.get(by) / run.before.get(by)
    if run.latency_final:  # the written model against the unpruned one, timed last
        return run.latency_final["measured"]
    if run.latency_checks:  # the last (timed) round's share of the model it started from, back to the unpruned
        return kept_check(run.latency_checks[-1])["measured"] * run.cost.baseline() / run.base_cost
    return run.cost.predict(run.allocation.removed) / run.base_cost


def _retrain_note(run: ShrinkRun) -> dict[str, Any]:
    if run.data is None:
        return {"done": False, "note": "no --data given: one-shot prune, accuracy not recovered or measured"}
    config = run.config
    mode = f"distillation from the unpruned model ({config.train.distill_loss} loss)" if config.distill else "labels"
    return {
        "done": True,
        "data": str(run.data.root),
        "validation": run.data.val_source,
        "mode": mode,
        "steps": run.trainer.steps_done if run.trainer else 0,
        "skipped_images": run.trainer.skipped if run.trainer else 0,
        **({"check": run.retrain_check} if run.retrain_check else {}),
    }


def _strategy(run: ShrinkRun) -> str:
    rounds = run.rounds
    return run.allocation.strategy + (f", in {rounds} rounds" if rounds > 1 else "")
