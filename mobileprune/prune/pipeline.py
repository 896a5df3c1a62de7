"""`shrink`: checkpoint in, smaller model out, as a sequence of phases that read top to bottom.

measure before → graph → sparsity training (optional) → allocation (how many per group) → schedule with
criterion (which ones, when) → verify against the prediction → accuracy after pruning → fine-tune →
report. Each phase is a plain function on a `ShrinkRun`, the state they share, so a notebook user can
run them one by one.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from ..artifacts.shrink_folder import EXPORTED_ONLY
from ..errors import UserError
from ..models import ModelSpec, classifier_module
from ..progress import SILENT, Progress
from ..reporting.provenance import versions
from ..train.data import DataSplits, ImageSet, calibration_batches, make_loader, noise_batches
from ..train.loop import Accuracy, Trainer, evaluate
from ..version import __version__
from .allocate import Allocation, AllocationInputs, allocate
from .config import AUTO, ShrinkConfig
from .cost import COST_MODELS, Cost, CostModel, LayerCosts, count_cost
from .criteria import CalibrationData, Criterion
from .graph import PruningGraph
from .plan import ChannelPlan
from .report import AccuracyReport, ShrinkReport
from .schedules import ScheduleContext

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from ..artifacts import LoadedModel


@dataclass
class ShrinkResult:
    model: nn.Module
    spec: ModelSpec
    plan: ChannelPlan
    report: ShrinkReport
    example_input: torch.Tensor


@dataclass
class ShrinkRun:
    """What the phases share; each phase fills in what the later ones read."""

    loaded: LoadedModel
    config: ShrinkConfig
    data: DataSplits | None
    progress: Progress
    example: torch.Tensor
    eval_set: ImageSet | None = None
    eval_loader: DataLoader | None = None
    started: float = field(default_factory=time.time)
    timings: dict[str, float] = field(default_factory=dict)
    accuracy: AccuracyReport = field(default_factory=AccuracyReport)
    before: Cost | None = None
    output_shape: tuple[int, ...] = ()
    graph: PruningGraph | None = None
    layer_costs: LayerCosts | None = None
    cost: CostModel | None = None
    criterion: Criterion | None = None
    calibration: CalibrationData | None = None
    allocation: Allocation | None = None
    teacher: nn.Module | None = None
    trainer: Trainer | None = None
    plan: ChannelPlan = field(default_factory=ChannelPlan)
    schedule_log: list[dict] = field(default_factory=list)
    channels_before: dict[str, int] = field(default_factory=dict)
    layers_before: dict[str, list[int]] = field(default_factory=dict)

    @property
    def model(self) -> nn.Module:
        return self.loaded.model


def shrink(
    loaded: LoadedModel,
    config: ShrinkConfig,
    data: DataSplits | None = None,
    eval_data: ImageSet | None = None,
    progress: Progress = SILENT,
) -> ShrinkResult:
    """Prune `loaded.model` in place to `config.target` and, with data, win accuracy back."""
    config.validate()
    run = start(loaded, config, data, eval_data, progress)
    measure_before(run)
    build_graph(run)
    sparsity_train(run)
    allocate_channels(run)
    prune(run)
    verify(run)
    measure_after_pruning(run)
    fine_tune(run)
    return finish(run)


def start(
    loaded: LoadedModel, config: ShrinkConfig, data: DataSplits | None, eval_data: ImageSet | None, progress: Progress
) -> ShrinkRun:
    """Check the inputs against each other, seed, and pick the images accuracy is measured on."""
    if loaded.weights == EXPORTED_ONLY:
        raise UserError(
            f"'{loaded.source}' was made from a pickled module and holds only its exported graph, which cannot be "
            "pruned again: shrink the original module (with --trust-pickle) to the lower target instead"
        )
    if config.distill and data is None:
        raise UserError("--distill needs images: pass --data DIR (labels are not needed)")
    if data is not None and not data.train.labeled and not config.distill:
        raise UserError(f"'{data.root}' has no class folders, so no labels: add --distill to learn from them")
    if (
        data is not None
        and data.train.labeled
        and not config.distill
        and len(data.train.classes) > loaded.spec.num_classes
    ):
        raise UserError(
            f"'{data.root}' has {len(data.train.classes)} classes, the model predicts {loaded.spec.num_classes}: "
            "pass --num-classes with the number of classes it was trained on, or --distill to ignore the labels"
        )
    torch.manual_seed(config.seed)
    size = loaded.spec.input_size
    run = ShrinkRun(loaded, config, data, progress, torch.randn(1, 3, size, size))
    run.eval_set = eval_data or (data.val if data and data.val and data.val.labeled else None)
    if run.eval_set is not None and len(run.eval_set.classes) != loaded.spec.num_classes:
        run.accuracy.note = (
            f"accuracy not measured: the evaluation images have {len(run.eval_set.classes)} classes, the model "
            f"predicts {loaded.spec.num_classes}; pass --eval-data with the model's own classes"
        )
        progress.log(f"[yellow]{run.accuracy.note}[/yellow]")
        run.eval_set = None
    if run.eval_set is not None:
        run.eval_loader = make_loader(run.eval_set, config.batch_size, False, workers=config.workers)
        run.accuracy.eval_images = f"{len(run.eval_set)} images"
    return run


def measure_before(run: ShrinkRun) -> None:
    run.model.eval()
    run.before = count_cost(run.model, run.example)
    run.output_shape = tuple(run.model(run.example).shape)
    run.accuracy.before = _evaluate(run, run.model, "accuracy before")


def build_graph(run: ShrinkRun) -> None:
    """Dependency groups and cost models (sparsity training changes weights, never the structure)."""
    t = time.time()
    classifier = classifier_module(run.model, run.loaded.spec)
    run.graph = PruningGraph(run.model, run.example, [classifier] if classifier is not None else [])
    if not run.graph.groups:
        raise UserError(f"{run.loaded.spec.arch}: no prunable channel groups found (every group reaches the output)")
    run.layer_costs = LayerCosts(run.model, run.example, run.graph.groups)
    run.cost = COST_MODELS.create(
        run.config.by, offered={"model": run.model, "example": run.example, "groups": run.graph.groups}
    )
    run.criterion = run.config.make_criterion()
    run.channels_before = {g.name: run.graph.channels(g.name) for g in run.graph.groups}
    run.layers_before = _layer_shapes(run.model)
    run.timings["graph_s"] = time.time() - t


def sparsity_train(run: ShrinkRun) -> None:
    """Drive useless channels' scale factors (BN γ, or SSS gates) to zero, when asked."""
    config = run.config
    if config.sparsity_train <= 0:
        return
    if run.data is None:
        raise UserError("--sparsity-train needs images to train on: pass --data DIR")
    t = time.time()
    loader = make_loader(run.data.train, config.batch_size, True, config.seed, config.workers)
    teacher = copy.deepcopy(run.model).eval() if config.distill else None
    regulariser = run.criterion.sparsity_regulariser(run.model.to(config.device), run.graph, config.l1_gamma)
    trainer = Trainer(loader, config.train, teacher, config.device)
    steps = max(1, round(config.sparsity_train * len(loader)))
    with run.progress.task(f"sparsity training ({regulariser.description})", steps) as bar:
        trainer.train(run.model, steps, tick=lambda loss: bar.advance(1, f"loss {loss:.3f}"), regulariser=regulariser)
    regulariser.finish()
    run.timings["sparsity_train_s"] = time.time() - t
    run.accuracy.after_sparsity_training = _evaluate(run, run.model, "accuracy after sparsity training")


def allocate_channels(run: ShrinkRun) -> None:
    """Calibration inputs for the criterion, then how many units each group loses."""
    config, t = run.config, time.time()
    if run.data is not None:
        source, data_free = f"{config.calibration_images} images from {run.data.root}", False
        batches = calibration_batches(
            run.data.calibration_set(), config.calibration_images, config.batch_size, config.seed
        )
    else:
        source, data_free = f"{config.calibration_images} random-noise inputs", True
        batches = noise_batches(config.calibration_images, run.loaded.spec.input_size, config.batch_size, config.seed)
    run.calibration = CalibrationData.from_model(run.model, batches)
    if run.criterion.needs_data:
        run.progress.log(f"criterion {run.criterion.name} ranks channels on {'data-free proxy: ' * data_free}{source}")
    run.criterion.prepare(run.model, run.calibration)
    schedule = config.make_schedule()
    if schedule.decides_amounts:  # greedy measures where to cut at every step
        run.allocation = Allocation({}, run.cost.baseline(), 1.0, f"{schedule.name} (measured at every step)")
    else:
        strategy = config.make_allocation(has_data=not data_free)
        if config.allocation == AUTO and data_free:
            run.progress.log("no --data: allocating by weight magnitude (sensitivity measured on noise misleads)")
        strategy.prepare(
            AllocationInputs(run.model, run.graph, run.criterion, batches, source, data_free, run.progress)
        )
        run.allocation = allocate(run.graph.groups, run.cost, strategy, config.target, config.round_to)
    run.timings["allocation_s"] = time.time() - t


def prune(run: ShrinkRun) -> None:
    """Remove the channels (retraining between layers when the schedule does), recording the plan."""
    config, t = run.config, time.time()
    if config.distill or run.data is not None:
        run.teacher = copy.deepcopy(run.model).eval()
    if run.data is not None:
        loader = make_loader(run.data.train, config.batch_size, True, config.seed, config.workers)
        run.trainer = Trainer(loader, config.train, run.teacher if config.distill else None, config.device)
    run.plan = ChannelPlan(list(run.loaded.plan.steps))
    schedule = config.make_schedule()
    ctx = ScheduleContext(
        run.model,
        run.graph,
        dict(run.allocation.removed),
        run.criterion,
        run.plan,
        calibration=run.calibration,
        trainer=run.trainer,
        steps_per_layer=config.steps_per_layer,
        quick_top1=_quick_top1(run),
        progress=run.progress,
        cost=run.cost,
        target=config.target,
        round_to=config.round_to,
    )
    run.schedule_log = schedule.run(ctx)
    if schedule.decides_amounts:
        predicted = run.cost.predict(ctx.removals)
        run.allocation = Allocation(
            dict(ctx.removals), predicted, predicted / run.cost.baseline(), run.allocation.strategy
        )
    run.timings["prune_s"] = time.time() - t


def verify(run: ShrinkRun) -> None:
    """The really pruned model must match the prediction and keep its output shape."""
    after = count_cost(run.model, run.example)
    predicted = run.layer_costs.predict(run.allocation.removed)
    if after != predicted:
        run.progress.log(f"[yellow]note: predicted {predicted}, counted {after}[/yellow]")
    shape = tuple(run.model(run.example).shape)
    if shape != run.output_shape:
        raise RuntimeError(f"pruning changed the output shape {run.output_shape} → {shape}")


def measure_after_pruning(run: ShrinkRun) -> None:
    """Accuracy of the plan applied to the original weights, without any retraining."""
    if run.eval_loader is None:
        return
    if run.teacher is None:  # nothing was retrained: the pruned model is the one-shot result
        run.accuracy.after_pruning = _evaluate(run, run.model, "accuracy after pruning")
        return
    new_steps = ChannelPlan(run.plan.steps[len(run.loaded.plan.steps) :])
    teacher = copy.deepcopy(run.teacher)
    pruned_only = new_steps.replay(teacher, run.example, [classifier_module(teacher, run.loaded.spec)])
    run.accuracy.after_pruning = _evaluate(run, pruned_only, "accuracy after pruning")


def fine_tune(run: ShrinkRun) -> None:
    """`--epochs` of retraining on the whole pruned model, cosine learning rate."""
    if run.trainer is None:
        return
    config, t = run.config, time.time()
    steps = round(config.epochs * len(run.trainer.loader))
    if steps:
        with run.progress.task(f"fine-tune {config.epochs:g} epochs", steps) as bar:
            run.trainer.train(run.model, steps, tick=lambda loss: bar.advance(1, f"loss {loss:.3f}"), cosine=True)
    layerwise = run.timings["prune_s"] if config.schedule == "layerwise" else 0
    run.timings["retrain_s"] = time.time() - t + layerwise
    if run.trainer.steps_done:
        run.accuracy.after_retraining = _evaluate(run, run.model, "accuracy after retraining")


def finish(run: ShrinkRun) -> ShrinkResult:
    config, loaded, graph = run.config, run.loaded, run.graph
    after = count_cost(run.model, run.example)
    run.timings["total_s"] = time.time() - run.started
    report = ShrinkReport(
        mobileprune=__version__,
        source={"path": loaded.source, "weights": loaded.weights, "sha256": loaded.sha256},
        spec=loaded.spec,
        config=config.to_json(),
        target=config.target,
        by=config.by,
        achieved=round(_metric(after, run) / _metric(run.before, run), 4),
        before=run.before,
        after=after,
        allocation={"strategy": run.allocation.strategy, "removed_units": run.allocation.removed},
        groups=[
            {"group": g.name, "before": run.channels_before[g.name], "after": graph.channels(g.name)}
            for g in graph.groups
        ],
        layers=_layer_diff(run.layers_before, _layer_shapes(run.model)),
        schedule_log=run.schedule_log,
        accuracy=run.accuracy,
        retraining=_retrain_note(run),
        timings_s={k: round(v, 2) for k, v in run.timings.items()},
        versions=versions(),
    )
    return ShrinkResult(run.model.eval(), loaded.spec, run.plan, report, run.example)


def _metric(cost: Cost, run: ShrinkRun) -> float:
    """The target's metric on a counted model: counted where it can be, else as the cost model predicts."""
    return cost.get(run.config.by) if run.config.by in ("params", "macs") else run.cost.predict(run.allocation.removed)


def _evaluate(run: ShrinkRun, model: nn.Module, label: str) -> Accuracy | None:
    if run.eval_loader is None:
        return None
    with run.progress.task(label, len(run.eval_loader)) as bar:
        acc = evaluate(model, run.eval_loader, run.config.device, tick=bar.advance)
    run.progress.log(f"{label}: top-1 {acc.top1:.4f}, top-5 {acc.top5:.4f} ({acc.images} images)")
    return acc


def _quick_top1(run: ShrinkRun):
    if run.eval_loader is None or not run.config.eval_batches:
        return None
    return lambda model: evaluate(model, run.eval_loader, run.config.device, run.config.eval_batches).top1


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
    }


def _layer_shapes(model: nn.Module) -> dict[str, list[int]]:
    shapes = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            shapes[name] = [m.in_channels, m.out_channels, m.groups]
        elif isinstance(m, nn.Linear):
            shapes[name] = [m.in_features, m.out_features, 1]
    return shapes


def _layer_diff(before: dict[str, list[int]], after: dict[str, list[int]]) -> list[dict]:
    return [
        {"layer": n, "in": [b[0], after[n][0]], "out": [b[1], after[n][1]], "groups": after[n][2]}
        for n, b in before.items()
    ]
